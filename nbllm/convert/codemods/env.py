"""Send every OpenAI key lookup to the provider's variable; remove hard-coded keys.

``"OPENAI_API_KEY"`` in ``os.getenv``/``os.environ``/dotenv lookups becomes the provider's
documented variable, ``getpass`` prompts name the provider, ``openai.api_key = "..."`` reads the
environment, and a hard-coded ``sk-...`` literal is replaced by an environment read and reported
with only its first three characters.
"""

from __future__ import annotations

import re

import libcst as cst
from libcst.metadata import QualifiedNameSource, ScopeProvider

from nbllm.convert.codemods.base import KEY_LITERAL, LANGCHAIN, NbllmCommand, collect, dotted, string_value, with_string

PROMPT_FUNCS = {"getpass.getpass", "builtins.input", "getpass"}
DOTENV = {"dotenv.load_dotenv", "dotenv.find_dotenv", "dotenv.dotenv_values", "dotenv.main.load_dotenv"}
_OPENAI_WORD = re.compile(r"\bOpen ?AI\b", re.IGNORECASE)
# Callees that read, store or pass on a key without sending it anywhere themselves.
NEUTRAL_ROOTS = ("os.", "builtins.", "dotenv.", "getpass.", "google.colab.", "openai.")


class _ForeignUses(cst.CSTVisitor):
    """docs/converter.md#keys: ``"OPENAI_API_KEY"`` strings and names used inside calls to other libraries.

    A key read handed to ``chromadb``'s OpenAI embedding function or put in a ``requests``
    header goes to that service, not to the retargeted client: it keeps its variable.
    """

    def __init__(self, cmd: NbllmCommand) -> None:
        super().__init__()
        self.cmd = cmd
        self.stack: list[str] = []  # "foreign", "sdk" or "neutral" for each enclosing call
        self.strings: set[cst.SimpleString] = set()
        self.names: set[str] = set()

    def _inside_foreign(self) -> bool:
        return next((kind == "foreign" for kind in reversed(self.stack) if kind != "neutral"), False)

    def visit_Call(self, node: cst.Call) -> None:
        scope = self.cmd.get_metadata(ScopeProvider, node.func, None)
        names = scope.get_qualified_names_for(node.func) if scope else set()
        if self.cmd.client_class(node) or any(LANGCHAIN.match(q.name) for q in names):
            kind = "sdk"
        elif any(q.source is QualifiedNameSource.IMPORT and not q.name.startswith(NEUTRAL_ROOTS) for q in names):
            kind = "foreign"  # a callable imported from another library
        else:
            kind = "neutral"  # builtins, os, local helpers, methods of local objects (SDK clients)
        self.stack.append(kind)

    def leave_Call(self, original_node: cst.Call) -> None:
        self.stack.pop()

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        if self._inside_foreign() and string_value(node) == "OPENAI_API_KEY":
            self.strings.add(node)

    def visit_Name(self, node: cst.Name) -> None:
        if self._inside_foreign():
            self.names.add(node.value)


class _Strings(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.strings: list[cst.SimpleString] = []
        self.names: set[str] = set()

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        self.strings.append(node)

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


def _reads_key(cmd: NbllmCommand, call: cst.Call) -> bool:
    """``os.getenv(...)``, ``userdata.get(...)``, ``getpass()``: a call whose value is a key."""
    return any(q.startswith(NEUTRAL_ROOTS) and not q.startswith(("openai.", "builtins."))
               for q in cmd.qnames(call.func))


def _env_write(assign: cst.Assign) -> cst.SimpleString | None:
    """The ``"OPENAI_API_KEY"`` of ``os.environ["OPENAI_API_KEY"] = <a literal>``."""
    if len(assign.targets) != 1 or not isinstance(assign.value, (cst.SimpleString, cst.ConcatenatedString)):
        return None
    target = assign.targets[0].target
    if isinstance(target, cst.Subscript) and dotted(target.value) == "os.environ" and len(target.slice) == 1:
        index = target.slice[0].slice
        if isinstance(index, cst.Index) and isinstance(index.value, cst.SimpleString) \
                and string_value(index.value) == "OPENAI_API_KEY":
            return index.value
    return None


class EnvKeys(NbllmCommand):
    DESCRIPTION = "Read the provider's key variable instead of OPENAI_API_KEY; drop hard-coded keys."
    TRIGGER = re.compile(r"OPENAI_API_KEY|sk-|getpass|input|api_key|dotenv")
    SHARES_WALK_WITH_NEXT = True  # key names and key literals only; ModelNames maps model literals

    def __init__(self, context: cst.codemod.CodemodContext) -> None:
        super().__init__(context)
        self.in_concat = 0
        self.dotenv_flagged = False

    def visit_Module(self, node: cst.Module) -> None:
        self.env_values: set[cst.BaseExpression] = set()
        self.keep = self._kept_key_names(node)

    def _kept_key_names(self, module: cst.Module) -> set[cst.SimpleString]:
        """The ``"OPENAI_API_KEY"`` strings that must stay: read for another service, or an
        environment write of a literal (a placeholder there would overwrite the target's key)."""
        assigns = collect(module, cst.Assign)
        keep = {s for a in assigns if (s := _env_write(a)) is not None}
        self.env_values = {a.value for a in assigns if _env_write(a) is not None}
        if not any(string_value(s) == "OPENAI_API_KEY" for s in collect(module, cst.SimpleString)):
            return keep
        uses = _ForeignUses(self)
        module.visit(uses)
        keep |= uses.strings
        held = []
        for assign in assigns:
            if isinstance(assign.value, cst.Call) and not _reads_key(self, assign.value):
                continue  # a call's result (a client, a response) does not carry the key onwards
            inner = _Strings()
            assign.value.visit(inner)
            held.append(({dotted(t.target) for t in assign.targets}, inner))
        for _ in range(4):  # a key reaches another library through a few names at most
            before = len(uses.names)
            for targets, inner in held:
                if targets & uses.names:
                    uses.names |= inner.names
                    keep.update(s for s in inner.strings if string_value(s) == "OPENAI_API_KEY")
            if len(uses.names) == before:
                break
        return keep

    def visit_ConcatenatedString(self, node: cst.ConcatenatedString) -> None:
        self.in_concat += 1

    def leave_ConcatenatedString(self, original_node: cst.ConcatenatedString,
                                 updated_node: cst.ConcatenatedString) -> cst.BaseExpression:
        self.in_concat -= 1
        return updated_node

    def leave_SimpleString(self, original_node: cst.SimpleString,
                           updated_node: cst.SimpleString) -> cst.BaseExpression:
        value = string_value(original_node)
        env = self.target.key_env
        if value == "OPENAI_API_KEY" and env and original_node not in self.keep:
            self.note(original_node, "env", f"OPENAI_API_KEY -> {env}")
            return with_string(updated_node, env)
        if value and KEY_LITERAL.match(value) and original_node in self.env_values:
            # os.environ["OPENAI_API_KEY"] = "sk-...": the key goes; the variable stays OpenAI's
            # (the target's key must not be copied into a variable other libraries send to OpenAI).
            self.flag(original_node, "hardcoded-key", f"hard-coded key {self.secret_literal(original_node)} "
                      f"removed; set {env or 'the key'} in the environment")
            self.note(original_node, "env", "hard-coded key removed")
            return with_string(updated_node, "")
        if value and KEY_LITERAL.match(value) and not self.in_concat:
            self.flag(original_node, "hardcoded-key", f"hard-coded key {self.secret_literal(original_node)} "
                      f"removed; the key is read from {env or 'the environment'}")
            self.note(original_node, "env", f"key literal -> read from {env or 'the environment'}")
            return self.key_expr()
        return updated_node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        names = self.qnames(original_node.func)
        if names & DOTENV and not self.dotenv_flagged:
            self.dotenv_flagged = True
            self.flag(original_node, "dotenv", f"dotenv: put {self.target.key_env or 'your key'}=... in the .env "
                      "file (it used OPENAI_API_KEY)")
        if not names & PROMPT_FUNCS or not updated_node.args:
            return updated_node
        first = updated_node.args[0]
        prompt = string_value(first.value)
        if prompt is None or not isinstance(first.value, cst.SimpleString):
            return updated_node
        new = _OPENAI_WORD.sub(self.target.spec.label, prompt.replace("OPENAI_API_KEY", self.target.key_env or ""))
        if new == prompt:
            return updated_node
        self.note(original_node, "env", "prompt now asks for the provider's key")
        return updated_node.with_changes(args=[first.with_changes(value=with_string(first.value, new)),
                                               *updated_node.args[1:]])

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        if len(original_node.targets) != 1 or dotted(original_node.targets[0].target) != "openai.api_key":
            return updated_node
        if isinstance(original_node.value, (cst.SimpleString, cst.ConcatenatedString)) and \
                not isinstance(updated_node.value, cst.Subscript | cst.Call):
            self.note(original_node, "env", f"openai.api_key reads {self.target.key_env}")
            return updated_node.with_changes(value=self.key_expr())
        return updated_node
