"""Rules: a safe condition language (``language``) and rules as versioned data (``model``)."""

from payments_core.rules.language import (
    FIELDS,
    Condition,
    FieldType,
    RuleSyntaxError,
    compile_condition,
    validate_condition,
)
from payments_core.rules.model import (
    OUTCOMES,
    Action,
    Rule,
    RuleSet,
    RuleSource,
    RuleType,
    parse_action,
    ruleset_path,
    starter_rule_set,
    write_ruleset,
)

__all__ = [
    "FIELDS",
    "OUTCOMES",
    "Action",
    "Condition",
    "FieldType",
    "Rule",
    "RuleSet",
    "RuleSource",
    "RuleSyntaxError",
    "RuleType",
    "compile_condition",
    "parse_action",
    "ruleset_path",
    "starter_rule_set",
    "validate_condition",
    "write_ruleset",
]
