"""The BPE encodings, from the rank files shipped in `proxy/data/` (sha256 checked; tiktoken's
own loader, which would download them, is never asked), and which one a model uses."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tiktoken

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

O200K = "o200k_base"
CL100K = "cl100k_base"

_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    name: str
    file: str
    sha256: str
    pattern: str
    special_tokens: Mapping[str, int]


# Patterns and special tokens as in tiktoken_ext/openai_public.py; hashes as tiktoken checks.
ENCODINGS: dict[str, EncodingSpec] = {
    O200K: EncodingSpec(
        O200K,
        "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PATTERN,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    CL100K: EncodingSpec(
        CL100K,
        "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PATTERN,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}


class TokenizerDataError(RuntimeError):
    """A packaged rank file is missing or does not match its published sha256."""


def load_ranks(spec: EncodingSpec, directory: Path = DATA_DIR) -> dict[bytes, int]:
    """The BPE ranks of `spec`, read from disk and verified; never from the network."""
    path = directory / spec.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerDataError(f"{path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise TokenizerDataError(f"{path}: sha256 {digest} != expected {spec.sha256}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@cache
def get_encoding(name: str) -> tiktoken.Encoding:
    spec = ENCODINGS[name]
    return tiktoken.Encoding(
        spec.name,
        pat_str=spec.pattern,
        mergeable_ranks=load_ranks(spec),
        special_tokens=dict(spec.special_tokens),
    )


_CL100K_MODELS = re.compile(r"^(gpt-4(?![o.\d])|gpt-4-|gpt-3\.5|text-embedding-(3|ada))")


def encoding_name_for_model(model: str | None) -> str:
    """cl100k_base for gpt-4 / gpt-3.5 / text-embedding-3; o200k_base for everything else
    (gpt-4o, gpt-4.1, o-series, gpt-5 and models we do not know)."""
    bare = (model or "").lower().rpartition("/")[2]
    return CL100K if _CL100K_MODELS.match(bare) else O200K
