"""Token counting the way the OpenAI API bills a chat request, offline.

The BPE rank files ship in `proxy/data/` and are loaded from disk with their sha256 checked;
tiktoken's own loader is never asked for them (it would try to download). One `TokenCounter`
per (encoding, chat format) is built and cached per process (`counter_for_model`).

What a request costs, as measured against `usage.prompt_tokens` of recorded exchanges
(tests/test_tokens.py walks them):
- every message: `<|im_start|>role<|im_sep|>content<|im_end|>`, i.e. 3 + role + content
  (+ 1 + name when a `name` is given); the reply primer adds 3 (2 for o3/o4/gpt-5);
- tool schemas: rendered into a hidden system text, `# Tools` / `## functions` / a TypeScript
  `namespace functions { ... }` (see `render_tools`), plus small per-request constants;
- an assistant tool call: its function name and its arguments re-serialised compactly;
  a tool result: its content plus the name of the function it answers;
- an image part: a fixed cost per detail level (`low` = base, `high`/`auto` = base plus
  per-tile cost over 512 px tiles); when the size is unknown, 1024x1024 is assumed.
The constants of `ChatFormat` that are not documented by OpenAI were fitted on recorded
exchanges; they are stated there, not hidden in the arithmetic.
"""

from proxy.tokens._counter import (
    ChatFormat,
    TokenCounter,
    chat_format_for_model,
    counter_for_model,
    note_tool_names,
)
from proxy.tokens._encodings import (
    CL100K,
    DATA_DIR,
    ENCODINGS,
    O200K,
    EncodingSpec,
    TokenizerDataError,
    encoding_name_for_model,
    get_encoding,
    load_ranks,
)
from proxy.tokens._images import image_size, image_tiles
from proxy.tokens._tool_text import legacy_functions, render_tools

__all__ = [
    "CL100K",
    "ChatFormat",
    "DATA_DIR",
    "ENCODINGS",
    "EncodingSpec",
    "O200K",
    "TokenCounter",
    "TokenizerDataError",
    "chat_format_for_model",
    "counter_for_model",
    "encoding_name_for_model",
    "get_encoding",
    "image_size",
    "image_tiles",
    "legacy_functions",
    "load_ranks",
    "note_tool_names",
    "render_tools",
]
