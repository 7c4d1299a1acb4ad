"""Resources: objects that steps receive from a factory or from a JSON config file.

A step, or a resource factory, asks for a resource through ``typing.Annotated``;
the engine builds the value and passes it as the keyword argument::

    def get_llm() -> LLM:
        return LLM(model="small")

    class Config(BaseModel):
        threshold: float

    class MyWorkflow(Workflow):
        @step
        async def answer(
            self,
            ev: StartEvent,
            llm: Annotated[LLM, Resource(get_llm)],
            config: Annotated[Config, ResourceConfig("settings.json", path_selector="qa")],
        ) -> StopEvent: ...

Values live in a :class:`ResourceManager`, one per workflow instance. A cached
resource (the default) is built once and then shared by every step and every run
of that instance; ``cache=False`` builds a new value for each step execution,
but only once while resolving that step's parameters, even if several of them
depend on it.

Where stalkflow differs from llama-index-workflows (behaviour visible to users):

- The state of one resolution (the dependency path and the non-cached values)
  belongs to the asyncio task doing it. Upstream keeps it on the manager, so two
  steps that resolve the same async resource at the same time fail with a false
  "Circular resource dependency" error and share their non-cached values.
- A cached resource is built once even when several steps ask for it at the same
  time: the later ones wait for the first build instead of building their own.
- A dependency cycle is reported before any factory runs.
- A config file that changes on disk is read again by the next manager that
  loads it (upstream keeps the first parse for the life of the process).

The package is split by concept: :mod:`.descriptors` (the protocol and
factory resources), :mod:`.config` (JSON config resources) and :mod:`.manager`
(resolution). Import from ``stalkflow.resource``; the submodules are an
implementation detail.
"""

# ``_X as _X`` re-exports private names that are imported from here: the config
# ones by stalkflow.representation; all three are llama-index-workflows' names.
from stalkflow.resource.config import ResourceConfig, check_resource_configs
from stalkflow.resource.config import _get_resource_config_data as _get_resource_config_data
from stalkflow.resource.config import _ResourceConfig as _ResourceConfig
from stalkflow.resource.descriptors import (
    Resource,
    ResourceDefinition,
    ResourceDescriptor,
    find_resource_params,
)
from stalkflow.resource.descriptors import _Resource as _Resource
from stalkflow.resource.manager import ResourceManager, resolve_resources

__all__ = [
    "Resource",
    "ResourceConfig",
    "ResourceDefinition",
    "ResourceDescriptor",
    "ResourceManager",
    "check_resource_configs",
    "find_resource_params",
    "resolve_resources",
]
