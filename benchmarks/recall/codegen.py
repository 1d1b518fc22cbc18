"""Long code blocks for the conversations: a Python module with tunable constants and
documented functions, so that a question can ask for a constant's value or for the name of
the function that does something. Names are drawn without replacement per conversation."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MODULES = (
    "rate limiter",
    "invoice parser",
    "thumbnail cache",
    "retry scheduler",
    "csv importer",
    "webhook dispatcher",
    "session store",
    "search indexer",
    "email digest builder",
    "inventory sync",
    "audit logger",
    "feature flag loader",
    "report exporter",
    "upload queue",
    "price calculator",
    "notification router",
    "backup rotator",
    "geo lookup",
    "log shipper",
    "billing reconciler",
)
PROJECTS = (
    "checkout",
    "warehouse",
    "analytics",
    "onboarding",
    "mobile",
    "partner portal",
    "support desk",
    "payments",
    "catalog",
    "scheduling",
)
VERBS = (
    ("merges", "merge"),
    ("validates", "validate"),
    ("normalizes", "normalize"),
    ("parses", "parse"),
    ("computes", "compute"),
    ("flushes", "flush"),
    ("loads", "load"),
    ("renders", "render"),
    ("retries", "retry"),
    ("expires", "expire"),
    ("groups", "group"),
    ("filters", "filter"),
    ("ranks", "rank"),
    ("encodes", "encode"),
    ("splits", "split"),
    ("schedules", "schedule"),
    ("archives", "archive"),
    ("throttles", "throttle"),
    ("deduplicates", "deduplicate"),
    ("summarizes", "summarize"),
)
OBJECTS = (
    ("duplicate rows", "duplicate_rows"),
    ("stale entries", "stale_entries"),
    ("pending jobs", "pending_jobs"),
    ("incoming events", "incoming_events"),
    ("failed deliveries", "failed_deliveries"),
    ("user tokens", "user_tokens"),
    ("price tiers", "price_tiers"),
    ("header fields", "header_fields"),
    ("batch windows", "batch_windows"),
    ("cache keys", "cache_keys"),
    ("shipping zones", "shipping_zones"),
    ("audit records", "audit_records"),
    ("upload chunks", "upload_chunks"),
    ("retry budgets", "retry_budgets"),
    ("currency amounts", "currency_amounts"),
    ("search terms", "search_terms"),
    ("webhook payloads", "webhook_payloads"),
    ("session cookies", "session_cookies"),
    ("export columns", "export_columns"),
    ("tenant quotas", "tenant_quotas"),
    ("log lines", "log_lines"),
    ("postal codes", "postal_codes"),
    ("discount codes", "discount_codes"),
    ("image sizes", "image_sizes"),
)
CONST_HEADS = ("MAX", "MIN", "DEFAULT", "BASE", "SOFT", "HARD")
CONST_NOUNS = (
    "BURST",
    "RETRY",
    "BATCH",
    "CHUNK",
    "QUEUE",
    "CACHE",
    "POOL",
    "WINDOW",
    "SHARD",
    "PAGE",
    "FLUSH",
    "BACKOFF",
    "LEASE",
    "TOKEN",
    "UPLOAD",
    "WORKER",
)
CONST_TAILS = ("SIZE", "LIMIT", "COUNT", "DELAY_MS", "TIMEOUT_S", "RATIO", "DEPTH", "AGE_S")

_BODIES = (
    """    result = []
    for {item} in {items}:
        if len(result) >= {const}:
            break
        result.append({item})
    return result""",
    """    started = time.monotonic()
    total = 0
    for {item} in {items}:
        total += len(str({item}))
        if time.monotonic() - started > {const} / 1000:
            break
    return total""",
    """    seen: dict[str, object] = {{}}
    for {item} in {items}:
        key = str({item}).strip().lower()
        if key and key not in seen:
            seen[key] = {item}
    return list(seen.values())[:{const}]""",
    """    buckets: dict[int, list[object]] = {{}}
    for index, {item} in enumerate({items}):
        buckets.setdefault(index % max(1, {const}), []).append({item})
    return [bucket for _, bucket in sorted(buckets.items())]""",
    """    attempts = 0
    while attempts < {const}:
        attempts += 1
        if all({item} is not None for {item} in {items}):
            return attempts
        time.sleep(0)
    return -1""",
)
_ITEMS = (
    ("row", "rows"),
    ("entry", "entries"),
    ("job", "jobs"),
    ("event", "events"),
    ("record", "records"),
    ("chunk", "chunks"),
    ("line", "lines"),
    ("key", "keys"),
)


@dataclass
class NamePool:
    """Constant names and (purpose, function name) pairs not yet used in this conversation."""

    rng: random.Random
    consts: list[str] = field(default_factory=list)
    funcs: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.consts = [
            f"{h}_{n}_{t}" for h in CONST_HEADS for n in CONST_NOUNS for t in CONST_TAILS
        ]
        self.funcs = [(f"{v3} {o}", f"{v}_{snake}") for v3, v in VERBS for o, snake in OBJECTS]
        self.rng.shuffle(self.consts)
        self.rng.shuffle(self.funcs)

    def has_room(self, consts: int, funcs: int) -> bool:
        return len(self.consts) >= consts and len(self.funcs) >= funcs


@dataclass(frozen=True, slots=True)
class CodeBlock:
    module: str
    text: str
    consts: tuple[tuple[str, str], ...]
    funcs: tuple[tuple[str, str], ...]


def _const_value(rng: random.Random, name: str) -> str:
    if name.endswith("RATIO"):
        return f"{rng.randint(5, 95) / 100:.2f}"
    if name.endswith("_S"):
        return f"{rng.randint(2, 900)}.0"
    return str(rng.randint(3, 5000))


def make_code_block(rng: random.Random, pool: NamePool, module: str) -> CodeBlock:
    n_consts, n_funcs = rng.randint(3, 5), rng.randint(3, 5)
    consts = tuple((name, _const_value(rng, name)) for name in pool.consts[:n_consts])
    funcs = tuple(pool.funcs[:n_funcs])
    del pool.consts[:n_consts], pool.funcs[:n_funcs]
    project = rng.choice(PROJECTS)
    camel = "".join(word.capitalize() for word in module.split())
    lines = [
        f'"""{module.capitalize()} for the {project} service."""',
        "",
        "from __future__ import annotations",
        "",
        "import time",
        "from dataclasses import dataclass, field",
        "",
    ]
    lines += [f"{name} = {value}" for name, value in consts]
    lines += [
        "",
        "",
        "@dataclass",
        f"class {camel}State:",
        "    pending: list[object] = field(default_factory=list)",
        "    updated_at: float = 0.0",
    ]
    for purpose, name in funcs:
        item, items = rng.choice(_ITEMS)
        const = rng.choice(consts)[0]
        body = rng.choice(_BODIES).format(item=item, items=items, const=const)
        lines += [
            "",
            "",
            f"def {name}({items}: list[object]) -> object:",
            f'    """{purpose.capitalize()} for the {module}."""',
            body,
        ]
    text = "```python\n" + "\n".join(lines) + "\n```"
    return CodeBlock(module, text, consts, funcs)
