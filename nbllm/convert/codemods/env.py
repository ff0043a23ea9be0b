"""Send every OpenAI key lookup to the provider's variable; remove hard-coded keys.

``"OPENAI_API_KEY"`` in ``os.getenv``/``os.environ``/dotenv lookups becomes the provider's
documented variable, ``getpass`` prompts name the provider, ``openai.api_key = "..."`` reads the
environment, and a hard-coded ``sk-...`` literal is replaced by an environment read and reported
with only its first three characters.
"""

from __future__ import annotations

import re

import libcst as cst

from nbllm.convert.codemods.base import KEY_LITERAL, NbllmCommand, dotted, string_value, with_string

PROMPT_FUNCS = {"getpass.getpass", "builtins.input", "getpass"}
DOTENV = {"dotenv.load_dotenv", "dotenv.find_dotenv", "dotenv.dotenv_values", "dotenv.main.load_dotenv"}
_OPENAI_WORD = re.compile(r"\bOpen ?AI\b", re.IGNORECASE)


class EnvKeys(NbllmCommand):
    DESCRIPTION = "Read the provider's key variable instead of OPENAI_API_KEY; drop hard-coded keys."
    TRIGGER = re.compile(r"OPENAI_API_KEY|sk-|getpass|input|api_key|dotenv")
    SHARES_WALK_WITH_NEXT = True  # key names and key literals only; ModelNames maps model literals

    def __init__(self, context: cst.codemod.CodemodContext) -> None:
        super().__init__(context)
        self.in_concat = 0
        self.dotenv_flagged = False

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
        if value == "OPENAI_API_KEY" and env:
            self.note(original_node, "env", f"OPENAI_API_KEY -> {env}")
            return with_string(updated_node, env)
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
