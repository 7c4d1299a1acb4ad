"""A workflow diagram as one HTML page: the Mermaid text, rendered in the browser.

The page is a single file with nothing beside it: the Mermaid source is embedded
(HTML-escaped) and rendered by Mermaid's JavaScript, loaded from a CDN. Offline,
or with scripts blocked, the page shows the Mermaid source itself, which
https://mermaid.live renders too.

Example:
    >>> page = to_html('flowchart TD\\n    a --> b', title="Demo")
    >>> page.startswith("<!DOCTYPE html>") and "a --&gt; b" in page
    True
"""

from __future__ import annotations

import html
import json

__all__ = ["MERMAID_JS", "to_html"]

#: Where the page loads Mermaid from (an ES module).
MERMAID_JS = "https://cdn.jsdelivr.net/npm/mermaid@11/dist/mermaid.esm.min.mjs"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="stalkflow">
<title>{title}</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
  h1 {{ font-size: 1.25rem; }}
  pre.mermaid {{ background: #fff; }}
  details pre {{ background: #f6f8fa; padding: 1rem; overflow: auto; }}
</style>
</head>
<body>
<h1>{title}</h1>
<pre class="mermaid">
{diagram}
</pre>
<details>
<summary>Mermaid source</summary>
<pre>{diagram}</pre>
</details>
<noscript>Scripts are disabled: the diagram above is its Mermaid source.</noscript>
<script type="module">
import mermaid from {script};
mermaid.initialize({{ startOnLoad: true, securityLevel: "strict" }});
</script>
</body>
</html>
"""


def to_html(mermaid: str, *, title: str = "Workflow", mermaid_js: str = MERMAID_JS) -> str:
    """A self-contained HTML page that renders ``mermaid`` (the text of ``to_mermaid``).

    Args:
        mermaid: The Mermaid flowchart text.
        title: The page's title and heading.
        mermaid_js: The URL of Mermaid's ES module.
    """
    # A JSON string is a JavaScript string; "</" must not close the script element.
    script = json.dumps(mermaid_js).replace("</", "<\\/")
    return _PAGE.format(title=html.escape(title), diagram=html.escape(mermaid), script=script)
