"""Helpers for testing workflows: ``WorkflowTestRunner``."""

from stalkflow.testing.runner import WorkflowTestResult, WorkflowTestRunner

__all__ = ["WorkflowTestResult", "WorkflowTestRunner"]
