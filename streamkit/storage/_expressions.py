"""DynamoDB expressions: tokenizer, parser, placeholders and the compile API.

One engine serves every place DynamoDB takes an expression: conditions and
filters, key conditions, updates and projections, given as text (with
``#name`` / ``:value`` placeholders) or built in Python
(:mod:`streamkit.storage._conditions`). Text is parsed into the AST of
``_conditions`` with placeholders still unresolved; parses depend on the
text alone, so they are cached and shared. ``compile_*`` then resolve the
placeholders against one call's :class:`ExpressionContext`, apply DynamoDB's
checks (:class:`~streamkit.storage._conditions.Binder`, shared with builder
trees) and hand the result to :mod:`streamkit.storage._evaluate`.

Grammar (keywords such as ``AND``, ``between`` or ``Set`` are
case-insensitive; function names are case-sensitive, as in DynamoDB)::

    condition ::= or
    or        ::= and ("OR" and)*
    and       ::= not ("AND" not)*
    not       ::= "NOT"* primary
    primary   ::= "(" condition ")"
                | attribute_exists(path) | attribute_not_exists(path)
                | attribute_type(operand, :type) | begins_with(operand, operand)
                | contains(operand, operand)
                | operand ("=" | "<>" | "<" | "<=" | ">" | ">=") operand
                | operand "BETWEEN" operand "AND" operand
                | operand "IN" "(" operand ("," operand)* ")"     -- 1 to 100
    operand   ::= path | :value | size(path)
    path      ::= element ("." element | "[" digits "]")*         -- depth <= 32
    element   ::= name | #name          -- a bare name may not be a reserved word

    update    ::= clause+        -- SET, REMOVE, ADD, DELETE, each at most once
    clause    ::= "SET" path "=" value ("," path "=" value)*
                | "REMOVE" path ("," path)*
                | "ADD" path :value ("," path :value)*
                | "DELETE" path :value ("," path :value)*
    value     ::= uoperand (("+" | "-") uoperand)?
    uoperand  ::= path | :value | if_not_exists(path, uoperand)
                | list_append(uoperand, uoperand)

    projection ::= path ("," path)*

A key condition uses the condition grammar; its narrower rules are checked
after names are resolved. Every error is an :class:`ExpressionError` carrying
the expression and the character position of the problem.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from streamkit.exceptions import ExpressionError, ValidationError
from streamkit.records._values import normalize_value
from streamkit.storage._conditions import (
    COMPARATORS,
    MAX_IN_OPERANDS,
    MAX_OPERATORS,
    AddAction,
    And,
    Arith,
    Attr,
    AttributeType,
    BeginsWith,
    Between,
    Binder,
    Compare,
    Condition,
    Const,
    Contains,
    DeleteAction,
    Exists,
    IfNotExists,
    In,
    ListAppend,
    NameRef,
    Node,
    Not,
    NotExists,
    Operand,
    Or,
    PathRef,
    RemoveAction,
    SetAction,
    Size,
    SizeOf,
    UpdateExpr,
    ValueRef,
    builder_binder,
)
from streamkit.storage._evaluate import (
    CompiledCondition,
    CompiledUpdate,
    CompositeKeyCondition,
    KeyCondition,
    Projection,
    composite_key_condition,
    elements,
    key_condition,
)
from streamkit.storage._expression_words import ANY_TYPE

__all__ = (
    "MAX_EXPRESSION_BYTES",
    "MAX_IN_OPERANDS",
    "MAX_OPERATORS",
    "MAX_PATH_DEPTH",
    "RESERVED_WORDS",
    "CompiledCondition",
    "CompiledUpdate",
    "ExpressionContext",
    "KeyCondition",
    "Projection",
    "compile_composite_key_condition",
    "compile_condition",
    "compile_key_condition",
    "compile_projection",
    "compile_update",
    "parse_condition",
    "parse_projection",
    "parse_update",
)

MAX_EXPRESSION_BYTES: Final = 4096
"""DynamoDB's limit on the length of one expression string (4 KB, UTF-8)."""
GENERATED: contextvars.ContextVar[bool] = contextvars.ContextVar("sk_generated", default=False)
"""True while the update / projection expressions compiled are streamkit's rewrites of
legacy ``AttributeUpdates`` / ``AttributesToGet`` (no size limit, as in DynamoDB)."""
MAX_PATH_DEPTH: Final = 32
"""DynamoDB's limit on the levels of one document path (``a.b[0]``: 3), the top one included."""
_MAX_PARENS: Final = 150  # DynamoDB nests 149 levels of "x or (...)"; far from the recursion limit

RESERVED_WORDS: Final = frozenset(
    """
    ABORT ABSOLUTE ACTION ADD AFTER AGENT AGGREGATE ALL ALLOCATE ALTER ANALYZE AND ANY ARCHIVE
    ARE ARRAY AS ASC ASCII ASENSITIVE ASSERTION ASYMMETRIC AT ATOMIC ATTACH ATTRIBUTE AUTH
    AUTHORIZATION AUTHORIZE AUTO AVG BACK BACKUP BASE BATCH BEFORE BEGIN BETWEEN BIGINT BINARY
    BIT BLOB BLOCK BOOLEAN BOTH BREADTH BUCKET BULK BY BYTE CALL CALLED CALLING CAPACITY CASCADE
    CASCADED CASE CAST CATALOG CHAR CHARACTER CHECK CLASS CLOB CLOSE CLUSTER CLUSTERED
    CLUSTERING CLUSTERS COALESCE COLLATE COLLATION COLLECTION COLUMN COLUMNS COMBINE COMMENT
    COMMIT COMPACT COMPILE COMPRESS CONDITION CONFLICT CONNECT CONNECTION CONSISTENCY CONSISTENT
    CONSTRAINT CONSTRAINTS CONSTRUCTOR CONSUMED CONTINUE CONVERT COPY CORRESPONDING COUNT
    COUNTER CREATE CROSS CUBE CURRENT CURSOR CYCLE DATA DATABASE DATE DATETIME DAY DEALLOCATE
    DEC DECIMAL DECLARE DEFAULT DEFERRABLE DEFERRED DEFINE DEFINED DEFINITION DELETE DELIMITED
    DEPTH DEREF DESC DESCRIBE DESCRIPTOR DETACH DETERMINISTIC DIAGNOSTICS DIRECTORIES DISABLE
    DISCONNECT DISTINCT DISTRIBUTE DO DOMAIN DOUBLE DROP DUMP DURATION DYNAMIC EACH ELEMENT ELSE
    ELSEIF EMPTY ENABLE END EQUAL EQUALS ERROR ESCAPE ESCAPED EVAL EVALUATE EXCEEDED EXCEPT
    EXCEPTION EXCEPTIONS EXCLUSIVE EXEC EXECUTE EXISTS EXIT EXPLAIN EXPLODE EXPORT EXPRESSION
    EXTENDED EXTERNAL EXTRACT FAIL FALSE FAMILY FETCH FIELDS FILE FILTER FILTERING FINAL FINISH
    FIRST FIXED FLATTERN FLOAT FOR FORCE FOREIGN FORMAT FORWARD FOUND FREE FROM FULL FUNCTION
    FUNCTIONS GENERAL GENERATE GET GLOB GLOBAL GO GOTO GRANT GREATER GROUP GROUPING HANDLER HASH
    HAVE HAVING HEAP HIDDEN HOLD HOUR IDENTIFIED IDENTITY IF IGNORE IMMEDIATE IMPORT IN
    INCLUDING INCLUSIVE INCREMENT INCREMENTAL INDEX INDEXED INDEXES INDICATOR INFINITE INITIALLY
    INLINE INNER INNTER INOUT INPUT INSENSITIVE INSERT INSTEAD INT INTEGER INTERSECT INTERVAL
    INTO INVALIDATE IS ISOLATION ITEM ITEMS ITERATE JOIN KEY KEYS LAG LANGUAGE LARGE LAST
    LATERAL LEAD LEADING LEAVE LEFT LENGTH LESS LEVEL LIKE LIMIT LIMITED LINES LIST LOAD LOCAL
    LOCALTIME LOCALTIMESTAMP LOCATION LOCATOR LOCK LOCKS LOG LOGED LONG LOOP LOWER MAP MATCH
    MATERIALIZED MAX MAXLEN MEMBER MERGE METHOD METRICS MIN MINUS MINUTE MISSING MOD MODE
    MODIFIES MODIFY MODULE MONTH MULTI MULTISET NAME NAMES NATIONAL NATURAL NCHAR NCLOB NEW NEXT
    NO NONE NOT NULL NULLIF NUMBER NUMERIC OBJECT OF OFFLINE OFFSET OLD ON ONLINE ONLY OPAQUE
    OPEN OPERATOR OPTION OR ORDER ORDINALITY OTHER OTHERS OUT OUTER OUTPUT OVER OVERLAPS
    OVERRIDE OWNER PAD PARALLEL PARAMETER PARAMETERS PARTIAL PARTITION PARTITIONED PARTITIONS
    PATH PERCENT PERCENTILE PERMISSION PERMISSIONS PIPE PIPELINED PLAN POOL POSITION PRECISION
    PREPARE PRESERVE PRIMARY PRIOR PRIVATE PRIVILEGES PROCEDURE PROCESSED PROJECT PROJECTION
    PROPERTY PROVISIONING PUBLIC PUT QUERY QUIT QUORUM RAISE RANDOM RANGE RANK RAW READ READS
    REAL REBUILD RECORD RECURSIVE REDUCE REF REFERENCE REFERENCES REFERENCING REGEXP REGION
    REINDEX RELATIVE RELEASE REMAINDER RENAME REPEAT REPLACE REQUEST RESET RESIGNAL RESOURCE
    RESPONSE RESTORE RESTRICT RESULT RETURN RETURNING RETURNS REVERSE REVOKE RIGHT ROLE ROLES
    ROLLBACK ROLLUP ROUTINE ROW ROWS RULE RULES SAMPLE SATISFIES SAVE SAVEPOINT SCAN SCHEMA
    SCOPE SCROLL SEARCH SECOND SECTION SEGMENT SEGMENTS SELECT SELF SEMI SENSITIVE SEPARATE
    SEQUENCE SERIALIZABLE SESSION SET SETS SHARD SHARE SHARED SHORT SHOW SIGNAL SIMILAR SIZE
    SKEWED SMALLINT SNAPSHOT SOME SOURCE SPACE SPACES SPARSE SPECIFIC SPECIFICTYPE SPLIT SQL
    SQLCODE SQLERROR SQLEXCEPTION SQLSTATE SQLWARNING START STATE STATIC STATUS STORAGE STORE
    STORED STREAM STRING STRUCT STYLE SUB SUBMULTISET SUBPARTITION SUBSTRING SUBTYPE SUM SUPER
    SYMMETRIC SYNONYM SYSTEM TABLE TABLESAMPLE TEMP TEMPORARY TERMINATED TEXT THAN THEN
    THROUGHPUT TIME TIMESTAMP TIMEZONE TINYINT TO TOKEN TOTAL TOUCH TRAILING TRANSACTION
    TRANSFORM TRANSLATE TRANSLATION TREAT TRIGGER TRIM TRUE TRUNCATE TTL TUPLE TYPE UNDER UNDO
    UNION UNIQUE UNIT UNKNOWN UNLOGGED UNNEST UNPROCESSED UNSIGNED UNTIL UPDATE UPPER URL USAGE
    USE USER USERS USING UUID VACUUM VALUE VALUED VALUES VARCHAR VARIABLE VARIANCE VARINT
    VARYING VIEW VIEWS VIRTUAL VOID WAIT WHEN WHENEVER WHERE WHILE WINDOW WITH WITHIN WITHOUT
    WORK WRAPPED WRITE YEAR ZONE
    """.split()  # noqa: SIM905 - reads (and diffs) best as the text of DynamoDB's own page
)
"""DynamoDB's reserved words (case-insensitive): not usable as bare names in expressions."""

CONDITION_FUNCTIONS: Final = (
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
)
UPDATE_FUNCTIONS: Final = ("if_not_exists", "list_append")
_ARITY: Final = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
    "size": 1,
    "if_not_exists": 2,
    "list_append": 2,
}
_CLAUSES: Final = ("SET", "REMOVE", "ADD", "DELETE")
_KEYWORDS: Final = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN"})


# --- tokens ------------------------------------------------------------------------------------

_NAME, _NAMEREF, _VALUEREF, _NUMBER, _OP, _EOF = "n", "h", "v", "d", "o", "$"
_TOKEN = re.compile(
    r"\s*(?:(?P<n>[A-Za-z][A-Za-z0-9_]*)|(?P<h>\#[A-Za-z0-9_]+)|(?P<v>:[A-Za-z0-9_]+)"
    r"|(?P<d>[0-9]+)|(?P<o><>|<=|>=|[=<>(),.\[\]+\-]))"
)
_Token = tuple[str, str, int]  # kind, text, position


def _tokenize(text: str, kind: str) -> list[_Token]:
    tokens: list[_Token] = []
    match = _TOKEN.match
    pos, end = 0, len(text)
    while True:
        m = match(text, pos)
        if m is None:
            rest = text[pos:].lstrip()
            if not rest:
                break
            at = end - len(rest)
            prev = tokens[-1][2] if tokens else at
            raise _syntax_error(kind, text, rest[0], at, prev)
        group = m.lastgroup
        assert group is not None
        tokens.append((group, m.group(group), m.start(group)))
        pos = m.end()
    tokens.append((_EOF, "", end))
    return tokens


def _syntax_error(kind: str, text: str, token: str, pos: int, prev: int) -> ExpressionError:
    shown = f'"{token}"' if token else "<EOF>"
    near = text[prev : pos + len(token)]
    return ExpressionError(
        f'Invalid {kind}: Syntax error; token: {shown}, near: "{near}"',
        expression=text,
        position=pos,
    )


# --- the parser --------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list; one instance per parse."""

    __slots__ = ("depth", "i", "kind", "ops", "text", "tokens", "update")

    def __init__(self, text: str, kind: str, *, update: bool = False, limit: bool = True) -> None:
        if not text.strip():
            raise ExpressionError(f"Invalid {kind}: The expression can not be empty")
        big = len(text) > MAX_EXPRESSION_BYTES // 4 and len(text.encode()) > MAX_EXPRESSION_BYTES
        if big and limit:
            raise ExpressionError(  # DynamoDB's words (at most MAX_EXPRESSION_BYTES)
                f"Invalid {kind}: Expression size has exceeded the maximum allowed size; "
                f"expression size: {len(text.encode())}"
            )
        self.text = text
        self.kind = kind
        self.update = update
        self.tokens = _tokenize(text, kind)
        self.i = 0
        self.depth = 0
        self.ops = 0

    # helpers

    def error(self, message: str, pos: int) -> ExpressionError:
        return ExpressionError(
            f"Invalid {self.kind}: {message}", expression=self.text, position=pos
        )

    def syntax(self) -> ExpressionError:
        _, token, pos = self.tokens[self.i]
        prev = self.tokens[self.i - 1][2] if self.i else pos
        return _syntax_error(self.kind, self.text, token, pos, prev)

    def at_op(self, op: str) -> bool:
        kind, token, _ = self.tokens[self.i]
        return kind == _OP and token == op

    def at_keyword(self, word: str) -> bool:
        kind, token, _ = self.tokens[self.i]
        return kind == _NAME and token.upper() == word

    def expect_op(self, op: str) -> None:
        if not self.at_op(op):
            raise self.syntax()
        self.i += 1

    def expect_end(self) -> None:
        if self.tokens[self.i][0] != _EOF:
            raise self.syntax()

    def count(self, pos: int) -> None:
        # DynamoDB caps operators and functions; it also bounds every tree we build
        self.ops += 1
        if self.ops > MAX_OPERATORS:
            raise self.error(  # DynamoDB's words (it counts functions too)
                f"The expression contains too many operators; operator count: {self.ops}", pos
            )

    def is_call(self) -> bool:
        return self.tokens[self.i][0] == _NAME and self.tokens[self.i + 1][:2] == (_OP, "(")

    # conditions

    def condition(self) -> Condition:
        left = self.conjunction()
        while self.at_keyword("OR"):
            self.count(self.tokens[self.i][2])
            self.i += 1
            left = Or(left, self.conjunction())
        return left

    def conjunction(self) -> Condition:
        left = self.negation()
        while self.at_keyword("AND"):
            self.count(self.tokens[self.i][2])
            self.i += 1
            left = And(left, self.negation())
        return left

    def negation(self) -> Condition:
        nots = 0
        while self.at_keyword("NOT"):  # a loop, not recursion: NOT NOT NOT ... stays shallow
            self.count(self.tokens[self.i][2])
            self.i += 1
            nots += 1
        cond = self.primary()
        for _ in range(nots):
            cond = Not(cond)
        return cond

    def primary(self) -> Condition:
        kind, token, pos = self.tokens[self.i]
        if kind == _OP and token == "(":
            self.depth += 1
            if self.depth > _MAX_PARENS:
                raise self.error(f"parentheses are nested deeper than {_MAX_PARENS} levels", pos)
            self.i += 1
            cond = self.condition()
            self.expect_op(")")
            self.depth -= 1
            return cond
        if self.is_call() and token in CONDITION_FUNCTIONS:
            cond = self.function_condition(token, pos)
            kind, after, _ = self.tokens[self.i]
            if (kind == _OP and after in COMPARATORS) or self.at_keyword("BETWEEN"):
                # attribute_exists(a) = :v: a boolean function is not a value
                raise self.error(
                    "The function is not allowed to be used this way in an expression; "
                    f"function: {token}",
                    pos,
                )
            return cond
        left = self.operand()
        kind, token, pos = self.tokens[self.i]
        if kind == _OP and token in COMPARATORS:
            self.count(pos)
            self.i += 1
            return Compare(token, left, self.operand(), pos=pos)
        if self.at_keyword("BETWEEN"):
            self.count(pos)
            self.i += 1
            low = self.operand()
            if not self.at_keyword("AND"):
                raise self.syntax()
            self.i += 1
            return Between(left, low, self.operand(), pos=pos)
        if self.at_keyword("IN"):
            self.count(pos)
            self.i += 1
            self.expect_op("(")
            options = [self.operand()]
            while self.at_op(","):
                self.i += 1
                options.append(self.operand())
            self.expect_op(")")
            if len(options) > MAX_IN_OPERANDS:
                raise self.error(
                    f"the IN operator takes at most {MAX_IN_OPERANDS} operands, got {len(options)}",
                    pos,
                )
            return In(left, tuple(options), pos=pos)
        if isinstance(left, Size):
            raise self.error(
                "The function is not allowed to be used this way in an expression; function: "
                "size (it gives a number to compare, as in size(path) > :n)",
                left.pos,
            )
        raise self.syntax()

    def function_condition(self, name: str, pos: int) -> Condition:
        args = self.call_arguments(name, pos, self.argument)
        first = args[0]
        if name in ("attribute_exists", "attribute_not_exists"):
            if not isinstance(first, PathRef):
                raise self.needs_path(name, pos)
            return (
                Exists(first, pos=pos) if name == "attribute_exists" else NotExists(first, pos=pos)
            )
        if name == "attribute_type":
            if not isinstance(args[1], ValueRef):
                raise self.error(  # DynamoDB's words: a path may hold any type
                    "Incorrect operand type for operator or function; operator or function: "
                    f"attribute_type, operand type: {{{ANY_TYPE}}}",
                    pos,
                )
            return AttributeType(first, args[1], pos=pos)
        if name == "begins_with":
            return BeginsWith(first, args[1], pos=pos)
        return Contains(first, args[1], pos=pos)

    def argument(self) -> Operand:
        """An argument of a condition function: a path or a :value, nothing else."""
        kind, token, pos = self.tokens[self.i]
        if kind == _VALUEREF:
            self.i += 1
            return ValueRef(token, pos=pos)
        if self.is_call():
            raise self.misplaced_function(token, pos)
        if kind in (_NAME, _NAMEREF):
            return self.path()
        raise self.syntax()

    def operand(self) -> Operand:
        kind, token, pos = self.tokens[self.i]
        if kind == _VALUEREF:
            self.i += 1
            return ValueRef(token, pos=pos)
        if self.is_call():
            if self.update:
                return self.update_call(token, pos)
            if token == "size":
                args = self.call_arguments(token, pos, self.argument)
                if not isinstance(args[0], PathRef):
                    raise self.needs_path(token, pos)
                return Size(args[0], pos=pos)
            raise self.misplaced_function(token, pos)
        if kind in (_NAME, _NAMEREF):
            return self.path()
        raise self.syntax()

    def call_arguments(self, name: str, pos: int, parse: Any) -> list[Operand]:
        self.count(pos)
        self.i += 2  # the name and "("
        args: list[Operand] = [parse()]
        while self.at_op(","):
            self.i += 1
            args.append(parse())
        self.expect_op(")")
        if len(args) != _ARITY[name]:
            raise self.error(
                "Incorrect number of operands for operator or function; "
                f"operator or function: {name}, number of operands: {len(args)}",
                pos,
            )
        return args

    def needs_path(self, name: str, pos: int) -> ExpressionError:
        return self.error(
            f"Operator or function requires a document path; operator or function: {name}", pos
        )

    def misplaced_function(self, name: str, pos: int) -> ExpressionError:
        if name in CONDITION_FUNCTIONS or name == "size":
            where = "an update expression" if self.update else "this place of an expression"
            return self.error(f"The function is not allowed in {where}; function: {name}", pos)
        if name in UPDATE_FUNCTIONS:
            return self.error(
                f"The function is not allowed in a {self.kind}; function: {name} "
                "(if_not_exists and list_append belong to update expressions)",
                pos,
            )
        return self.error(f"Invalid function name; function: {name}", pos)

    # paths

    def path(self) -> PathRef:
        _, _, start = self.tokens[self.i]
        elements: list[str | int | NameRef] = [self.element()]
        while True:
            if self.at_op("."):
                self.i += 1
                elements.append(self.element())
            elif self.at_op("["):
                self.i += 1
                kind, token, _ = self.tokens[self.i]
                if kind != _NUMBER:
                    raise self.syntax()
                self.i += 1
                self.expect_op("]")
                elements.append(int(token))
            else:
                break
        if len(elements) > MAX_PATH_DEPTH:  # DynamoDB: 32 levels, the top one included
            raise self.error(
                f"The document path has too many nesting levels; nesting levels: {len(elements)}",
                start,
            )
        return PathRef(tuple(elements), pos=start)

    def element(self) -> str | NameRef:
        kind, token, pos = self.tokens[self.i]
        if kind == _NAMEREF:
            self.i += 1
            return NameRef(token, pos=pos)
        if kind != _NAME:
            raise self.syntax()
        upper = token.upper()
        if upper in RESERVED_WORDS:
            if upper in _KEYWORDS or (self.update and upper in _CLAUSES):
                raise self.syntax()
            raise self.error(
                f"Attribute name is a reserved keyword; reserved keyword: {token} "
                f"(write a placeholder such as #{token.lower()} and pass "
                f'names={{"#{token.lower()}": "{token}"}})',
                pos,
            )
        self.i += 1
        return token

    # update expressions

    def update_expression(self) -> UpdateExpr:
        clauses: dict[str, list[Any]] = {}
        while self.tokens[self.i][0] != _EOF:
            kind, token, pos = self.tokens[self.i]
            word = token.upper() if kind == _NAME else ""
            if word not in _CLAUSES:
                raise self.syntax()
            if word in clauses:
                raise self.error(
                    f'The "{word}" section can only be used once in an update expression', pos
                )
            self.i += 1
            actions = [self.action(word)]
            while self.at_op(","):
                self.i += 1
                actions.append(self.action(word))
            clauses[word] = actions
        return UpdateExpr(
            tuple(clauses.get("SET", ())),
            tuple(clauses.get("REMOVE", ())),
            tuple(clauses.get("ADD", ())),
            tuple(clauses.get("DELETE", ())),
        )

    def action(self, word: str) -> Node:
        if self.tokens[self.i][0] not in (_NAME, _NAMEREF):
            raise self.syntax()
        path = self.path()
        if word == "REMOVE":
            return RemoveAction(path)
        if word == "SET":
            self.expect_op("=")
            value = self.operand()
            kind, token, pos = self.tokens[self.i]
            if kind == _OP and token in "+-":
                self.count(pos)
                self.i += 1
                value = Arith(token, value, self.operand(), pos=pos)
            return SetAction(path, value)
        kind, token, pos = self.tokens[self.i]
        if kind != _VALUEREF:
            raise self.syntax()
        self.i += 1
        if word == "ADD":
            return AddAction(path, ValueRef(token, pos=pos))
        return DeleteAction(path, ValueRef(token, pos=pos))

    def update_call(self, name: str, pos: int) -> Operand:
        if name not in UPDATE_FUNCTIONS:
            raise self.misplaced_function(name, pos)
        self.depth += 1  # nested calls recurse: bound them like parentheses
        if self.depth > _MAX_PARENS:
            raise self.error(f"function calls are nested deeper than {_MAX_PARENS} levels", pos)
        args = self.call_arguments(name, pos, self.operand)
        self.depth -= 1
        if name == "list_append":
            for arg in args:  # DynamoDB refuses list_append(list_append(...), ...)
                if isinstance(arg, ListAppend):
                    raise self.error(
                        "The function is not allowed to be used this way in an expression; "
                        "function: list_append",
                        arg.pos,
                    )
            return ListAppend(args[0], args[1], pos=pos)
        if not isinstance(args[0], PathRef):
            raise self.needs_path(name, pos)
        return IfNotExists(args[0], args[1], pos=pos)


@functools.lru_cache(maxsize=4096)
def parse_condition(text: str, kind: str = "ConditionExpression") -> Condition:
    """Parse a condition, filter or key condition expression into a raw AST.

    Args:
        text: the expression.
        kind: the parameter name used in error messages ("ConditionExpression",
            "FilterExpression" or "KeyConditionExpression").

    Raises:
        ExpressionError: on any syntax error, with the position of the offending token.
    """
    parser = _Parser(text, kind)
    cond = parser.condition()
    parser.expect_end()
    return cond


@functools.lru_cache(maxsize=4096)
def parse_update(text: str, limit: bool = True) -> UpdateExpr:
    """Parse an update expression into a raw AST (``limit``: at most 4 KB).

    Raises:
        ExpressionError: on any syntax error, with the position of the offending token.
    """
    parser = _Parser(text, "UpdateExpression", update=True, limit=limit)
    return parser.update_expression()


@functools.lru_cache(maxsize=4096)
def parse_projection(text: str, limit: bool = True) -> tuple[PathRef, ...]:
    """Parse a projection expression (comma-separated paths) into raw paths.

    Raises:
        ExpressionError: on any syntax error, with the position of the offending token.
    """
    parser = _Parser(text, "ProjectionExpression", limit=limit)
    paths = [parser.path()]
    while parser.at_op(","):
        parser.i += 1
        paths.append(parser.path())
    parser.expect_end()
    return tuple(paths)


# --- names and values --------------------------------------------------------------------------

_NAME_KEY = re.compile(r"#[A-Za-z0-9_]+\Z")
_VALUE_KEY = re.compile(r":[A-Za-z0-9_]+\Z")


class ExpressionContext:
    """The ``names=`` and ``values=`` of one API call, shared by all its expressions.

    DynamoDB refuses placeholders that no expression of the call uses, so the
    caller compiles every expression of the call with one context and then
    calls :meth:`check_all_used`. Values are normalized once, here.

    Raises:
        ExpressionError: a placeholder key is not ``#word`` / ``:word``, or a
            name is not a non-empty string.
        ValidationError: a value cannot be stored; the message names its placeholder.
    """

    __slots__ = ("_names", "_used_names", "_used_values", "_values")

    def __init__(self, names: Mapping[str, str] | None, values: Mapping[str, Any] | None) -> None:
        self._names: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        if names is not None and not isinstance(names, Mapping):
            raise ValidationError(f"names= must be a mapping of #name to str, got {names!r}")
        if values is not None and not isinstance(values, Mapping):
            raise ValidationError(f"values= must be a mapping of :value to a value, got {values!r}")
        for k, name in (names or {}).items():
            if not isinstance(k, str) or not _NAME_KEY.match(k):
                raise ExpressionError(
                    f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{k}" '
                    "(keys are # followed by letters, digits or _)"
                )
            if not isinstance(name, str) or not name:
                raise ExpressionError(
                    f"ExpressionAttributeNames: {k} must map to a non-empty string, got {name!r}"
                )
            self._names[k] = name
        for k, value in (values or {}).items():
            if not isinstance(k, str) or not _VALUE_KEY.match(k):
                raise ExpressionError(
                    f'ExpressionAttributeValues contains invalid key: Syntax error; key: "{k}" '
                    "(keys are : followed by letters, digits or _)"
                )
            self._values[k] = normalize_value(value, k)
        self._used_names: set[str] = set()
        self._used_values: set[str] = set()

    def name(self, placeholder: str) -> str | None:
        """The attribute name behind ``#placeholder`` (marking it used), or None."""
        name = self._names.get(placeholder)
        if name is not None:
            self._used_names.add(placeholder)
        return name

    def value(self, placeholder: str) -> Any:
        """The normalized value behind ``:placeholder`` (marking it used).

        Raises:
            KeyError: when it is not defined.
        """
        value = self._values[placeholder]
        self._used_values.add(placeholder)
        return value

    def check_all_used(self) -> None:
        """Refuse names or values that none of the call's expressions used.

        Raises:
            ExpressionError: naming the unused placeholders.
        """
        for label, defined, used in (
            ("ExpressionAttributeNames", self._names, self._used_names),
            ("ExpressionAttributeValues", self._values, self._used_values),
        ):
            unused = sorted(set(defined) - used)
            if unused:
                keys = ", ".join(unused)
                raise ExpressionError(
                    f"Value provided in {label} unused in expressions: keys: {{{keys}}}"
                )


# --- the public compile API --------------------------------------------------------------------


def compile_condition(
    cond: Condition | str | CompiledCondition | None,
    ctx: ExpressionContext,
    *,
    kind: str = "ConditionExpression",
) -> CompiledCondition | None:
    """Compile a condition or filter, given as DynamoDB text or as a builder condition.

    Values are bound at compile time, so a cache of compiled conditions must
    key on the text *and* the names and values used.

    Args:
        cond: the expression text, a :class:`Condition`, an already compiled
            condition (returned as is) or None (no condition: returns None).
        ctx: the call's names and values; the placeholders used are marked.
        kind: the parameter name for error messages ("FilterExpression", ...).

    Raises:
        ExpressionError: syntax errors, undefined placeholders, reserved words,
            and values of a type the operator cannot take.
    """
    if cond is None or isinstance(cond, CompiledCondition):
        return cond
    if isinstance(cond, str):
        binder = Binder(ctx, kind, cond)
        bound = binder.condition(parse_condition(cond, kind))
        return CompiledCondition(bound, cond, binder.attributes)
    if isinstance(cond, Condition):
        binder = builder_binder(cond, "condition")
        return CompiledCondition(binder.condition(cond), None, binder.attributes)
    raise _not_a_condition(cond)


def _not_a_condition(value: object) -> TypeError:
    if isinstance(value, (Attr, SizeOf)):
        return TypeError(
            f"{value!r} is an attribute, not a condition: call a method such as .exists() "
            "or .eq(value) on it"
        )
    return TypeError(f"expected a condition or an expression string, got {type(value).__name__}")


def compile_update(
    ctx: ExpressionContext,
    expression: str | None = None,
    *,
    set: Mapping[str, Any] | None = None,
    remove: Iterable[str] | None = None,
    add: Mapping[str, Any] | None = None,
    delete: Mapping[str, Any] | None = None,
) -> CompiledUpdate:
    """Compile an update, from an UpdateExpression or from the keyword form.

    In the keyword form the keys are literal top-level attribute names and
    the values plain Python values: ``set`` assigns, ``remove`` deletes
    attributes, ``add`` adds numbers or set elements, ``delete`` removes set
    elements. With neither form the update changes nothing.

    Raises:
        ValidationError: both forms given, or a keyword-form value that cannot be stored.
        ExpressionError: for the expression, as DynamoDB would refuse it;
            overlapping paths and wrongly typed ADD/DELETE values in both forms.
    """
    keywords = (set, remove, add, delete)
    if expression is not None:
        if any(k is not None for k in keywords):
            raise ValidationError(
                "give either an update expression or set=/remove=/add=/delete=, not both"
            )
        ast = parse_update(expression, not GENERATED.get())
        bound = Binder(ctx, "UpdateExpression", expression).update(ast)
        return CompiledUpdate(bound, expression)
    if isinstance(remove, str):
        remove = (remove,)
    sets = tuple(SetAction(_top(n), Const(normalize_value(v, n))) for n, v in (set or {}).items())
    removes = tuple(RemoveAction(_top(n)) for n in remove or ())
    adds = tuple(AddAction(_top(n), Const(normalize_value(v, n))) for n, v in (add or {}).items())
    deletes = tuple(
        DeleteAction(_top(n), Const(normalize_value(v, n))) for n, v in (delete or {}).items()
    )
    bound = Binder(None, "update", None).update(UpdateExpr(sets, removes, adds, deletes))
    return CompiledUpdate(bound)


def _top(name: Any) -> PathRef:
    if type(name) is not str or not name:
        raise ValidationError(f"attribute names are non-empty strings, got {name!r}")
    return PathRef((name,))


def compile_projection(
    projection: str | Sequence[str | Attr] | None, ctx: ExpressionContext
) -> Projection | None:
    """Compile a projection: a ProjectionExpression, or a list of attributes.

    A list holds literal top-level names (``"a.b"`` is the attribute named
    ``a.b``) or builder attributes for nested paths (``sk.attr("a")["b"]``);
    duplicates are ignored.

    Raises:
        ExpressionError: syntax errors, undefined ``#names``, reserved words,
            and overlapping paths (``a`` with ``a.b``).
    """
    if projection is None:
        return None
    if isinstance(projection, str):
        binder = Binder(ctx, "ProjectionExpression", projection)
        paths = [binder.path(p) for p in parse_projection(projection, not GENERATED.get())]
        binder.check_overlaps(paths)
        return Projection([elements(p) for p in paths], projection)
    refs: dict[tuple[Any, ...], PathRef] = {}
    for entry in projection:
        ref = entry._ref if isinstance(entry, Attr) else _top(entry)
        refs.setdefault(ref.elements, ref)
    if not refs:
        raise ValidationError("a projection needs at least one attribute")
    Binder(None, "projection", None).check_overlaps(list(refs.values()))
    return Projection(list(refs))


def compile_key_condition(
    cond: Condition | str, ctx: ExpressionContext, *, partition_key: str, sort_key: str | None
) -> KeyCondition:
    """Compile a key condition: partition key ``=`` value, optionally AND one sort key condition.

    The sort key condition is one of ``= < <= > >=`` against a value,
    ``BETWEEN`` two values or ``begins_with`` (strings and binaries). Either
    side of a comparison may hold the key (``:v < sk`` is ``sk > :v``).

    Raises:
        ExpressionError: anything else, with what is wrong and where.
    """
    bound, binder = _bind_key_condition(cond, ctx)
    return key_condition(bound, partition_key=partition_key, sort_key=sort_key, fail=binder.error)


def _bind_key_condition(cond: Condition | str, ctx: ExpressionContext) -> tuple[Condition, Binder]:
    """A key condition (text or built) resolved against ``ctx``, with its binder."""
    kind = "KeyConditionExpression"
    if isinstance(cond, str):
        binder = Binder(ctx, kind, cond)
        return binder.condition(parse_condition(cond, kind)), binder
    if isinstance(cond, Condition):
        binder = builder_binder(cond, "key condition")
        return binder.condition(cond), binder
    raise _not_a_condition(cond)


def compile_composite_key_condition(
    cond: Condition | str,
    ctx: ExpressionContext,
    *,
    hash_keys: Sequence[str],
    range_keys: Sequence[str],
) -> CompositeKeyCondition:
    """Compile a key condition on an index with a multi-attribute key: ``=`` on every
    partition key attribute, then sort key attributes left to right, each ``=`` but the
    last (which may be any sort key condition), all joined by AND.

    Raises:
        ExpressionError: anything else, with what is wrong and where.
    """
    bound, binder = _bind_key_condition(cond, ctx)
    return composite_key_condition(
        bound, hash_keys=hash_keys, range_keys=range_keys, fail=binder.error
    )
