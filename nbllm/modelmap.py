"""Which model a request asks for: OpenAI families mapped onto a provider's tiers (convert and redirect).

Only real OpenAI model ids are recognised (a strict pattern), so look-alikes such as an index
called ``"gpt-4-langchain-docs"`` or a vector-DB config ``{"model": "ada"}`` never match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nbllm.errors import ConfigError
from nbllm.providers.catalog import ProviderSpec

_DATE = r"\d{4}(?:-\d{2}-\d{2})?"
_SUFFIX = rf"(?:-(?:mini|nano|turbo|preview|vision|instruct|16k|32k|8k|latest|chat|audio|realtime|search|{_DATE}))*"
_OPENAI_MODEL = re.compile(
    rf"""(?x)^(?:
        gpt-(?:3\.5|35)-turbo{_SUFFIX}
      | gpt-(?:4|4o|4\.1|4\.5|5|5\.1){_SUFFIX}
      | chatgpt-4o-latest
      | o[134]{_SUFFIX}(?:-pro)?
      | text-embedding-(?:ada-002|3-small|3-large)
      | text-(?:similarity|search)-(?:ada|babbage|curie|davinci)-\w+-001
      | text-(?:davinci|curie|babbage|ada)-00[1-3]
      | (?:davinci|babbage)-002
      | code-davinci-00[12]
    )$"""
)


def is_openai_model(name: str) -> bool:
    return bool(_OPENAI_MODEL.match(name))


def tier_of(name: str) -> str:
    """The tier an OpenAI model id belongs to (call only for recognised ids)."""
    if name.startswith(("text-embedding-", "text-similarity-", "text-search-")):
        return "embedding"
    if re.match(r"o[134](?:-|$)", name):
        return "reasoning"
    if re.search(r"-(?:mini|nano)(?:-|$)", name) or name.startswith(("gpt-3.5", "gpt-35")):
        return "fast"
    if name.startswith(("gpt-4", "gpt-5", "chatgpt-")):
        return "strong"
    return "fast"  # davinci, babbage, curie: legacy completion models


@dataclass(frozen=True)
class Mapping:
    old: str
    new: str
    tier: str  # "strong", ..., or "override"
    warning: str | None = None


@dataclass
class ModelMap:
    """Maps OpenAI model ids for one target; remembers every mapping it made for the report."""

    spec: ProviderSpec
    overrides: dict[str, str] = field(default_factory=dict)

    def lookup(self, name: str) -> Mapping | None:
        """The mapping for a model string, or None when it is not an OpenAI model we know."""
        if name in self.overrides:
            return Mapping(name, self.overrides[name], "override")
        if not is_openai_model(name):
            return None
        tier = tier_of(name)
        new = self.spec.tiers.get(tier)
        warning = None
        if name.startswith(("text-davinci", "text-curie", "text-babbage", "text-ada", "code-davinci")):
            warning = f"{name} is a retired completion model; mapped to the {tier} chat tier, check the prompt format"
        if not new:
            new = self.spec.default_model
            if not new:
                return Mapping(name, name, tier, f"{self.spec.id} has no {tier} model and no default model; "
                               f"{name} was kept, pass --model {name}=NAME")
            warning = f"{self.spec.id} has no {tier} model in the catalogue; {name} -> its default {new}"
        return Mapping(name, new, tier, warning)


    def tier_model(self, tier: str) -> str | None:
        """The target's model for a tier (its default model when it has no such tier)."""
        return self.spec.tiers.get(tier) or self.spec.default_model


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``--model OLD=NEW`` options to a dict; a malformed one is a usage error."""
    out: dict[str, str] = {}
    for item in items or []:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(f"--model expects OLD=NEW (for example gpt-4o=ernie-4.5-turbo-128k), got {item!r}.")
        out[old.strip()] = new.strip()
    return out


def describe(spec: ProviderSpec, overrides: dict[str, str]) -> list[str]:
    """The default map in words, for the report: family -> model (tier)."""
    families = {"strong": "gpt-4*, gpt-4o, gpt-4.1, gpt-5", "fast": "gpt-3.5*, *-mini, *-nano",
                "reasoning": "o1, o3, o4*", "embedding": "text-embedding-*"}
    lines = []
    for tier, fam in families.items():
        model = spec.tiers.get(tier) or spec.default_model or "(kept)"
        note = "" if spec.tiers.get(tier) else " - no such tier, default model"
        lines.append(f"{fam} -> {model} ({tier}{note})")
    lines += [f"{old} -> {new} (--model)" for old, new in overrides.items()]
    return lines
