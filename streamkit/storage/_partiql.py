"""PartiQL for DynamoDB: the lexer and parser, text -> a small statement AST.

The subset DynamoDB runs (``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE`` and, in a
transaction, ``EXISTS(SELECT ...)``) is parsed into frozen dataclasses. ``WHERE``
clauses and ``SET`` values become the expression AST of
:mod:`streamkit.storage._conditions` — the nodes conditions, filters and update
expressions already use — so one evaluator serves both languages. The only node
added here is :class:`Value`: a literal or ``?`` parameter, which
:mod:`streamkit.storage._partiql_plan` turns into a ``Const`` once the parameters are
known. Grammar (keywords case-insensitive; names bare or ``"double-quoted"``)::

    statement ::= select | insert | update | delete | "EXISTS" "(" select ")"
    select    ::= "SELECT" ("*" | path ("," path)*) "FROM" name ["." name]
                  ["WHERE" cond] ["ORDER" "BY" name ["ASC"|"DESC"] ("," ...)*]
    insert    ::= "INSERT" "INTO" name "VALUE" (map | "?")
    update    ::= "UPDATE" name (("SET" assign ("," assign)*) | ("REMOVE" path ("," path)*))+
                  "WHERE" cond ["RETURNING" ("ALL"|"MODIFIED") ("OLD"|"NEW") "*"]
    delete    ::= "DELETE" "FROM" name "WHERE" cond ["RETURNING" "ALL" "OLD" "*"]
    assign    ::= path "=" (operand [("+"|"-") operand] | list_append(operand, operand)
                  | set_add(path, value) | set_delete(path, value))
    cond      ::= and ("OR" and)* ;  and ::= not ("AND" not)* ;  not ::= "NOT" not | primary
    primary   ::= "(" cond ")" | begins_with(o, o) | contains(o, o) | attribute_exists(path)
                | attribute_not_exists(path) | attribute_type(o, o)
                | o ("=" | "<>" | "!=" | "<" | "<=" | ">" | ">=") o
                | o ["NOT"] "BETWEEN" o "AND" o | o ["NOT"] "IN" ("[" | "(") o ("," o)* ("]" | ")")
                | path "IS" ["NOT"] "MISSING"
    o         ::= path | value | size(path)
    path      ::= name ("." name | "[" digits "]")*
    value     ::= 'string' | number | TRUE | FALSE | NULL | "?" | "[" values "]"
                | "{" 'key' ":" value ("," ...)* "}" | "<<" values ">>"

Every refusal is a :class:`~streamkit.exceptions.ValidationError` worded as DynamoDB
words it (``Statement wasn't well formed, can't be processed: ...``); nothing here
recurses deeper than the parenthesis, nesting and operator limits allow.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Final

from streamkit.exceptions import ValidationError
from streamkit.records._values import MAX_DEPTH
from streamkit.storage._conditions import (
    MAX_IN_OPERANDS,
    MAX_OPERATORS,
    AddAction,
    And,
    Arith,
    AttributeType,
    BeginsWith,
    Between,
    Compare,
    Condition,
    Contains,
    DeleteAction,
    Exists,
    In,
    ListAppend,
    Not,
    NotExists,
    Operand,
    Or,
    PathRef,
    RemoveAction,
    SetAction,
    Size,
    UpdateExpr,
)

__all__ = (
    "MAX_STATEMENT_LENGTH",
    "NOT_WELL_FORMED",
    "Delete",
    "ExistsCheck",
    "Insert",
    "ListValue",
    "Literal",
    "MapValue",
    "Param",
    "Select",
    "SetValue",
    "Statement",
    "Update",
    "Value",
    "ValueExpr",
    "parse_statement",
)

MAX_STATEMENT_LENGTH: Final = 8192
"""DynamoDB's limit on the length of a PartiQL statement."""
NOT_WELL_FORMED: Final = "Statement wasn't well formed, can't be processed: "
_MAX_PARENS: Final = 50
_MAX_PATH_DEPTH: Final = 32

# --- the statement AST -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    """A scalar literal: str, Decimal, bool or None."""

    value: object


@dataclass(frozen=True, slots=True)
class Param:
    """The ``index``-th ``?`` of the statement (0-based)."""

    index: int


@dataclass(frozen=True, slots=True)
class ListValue:
    """``[v, ...]``."""

    items: tuple[ValueExpr, ...]


@dataclass(frozen=True, slots=True)
class MapValue:
    """``{'k': v, ...}``."""

    entries: tuple[tuple[str, ValueExpr], ...]


@dataclass(frozen=True, slots=True)
class SetValue:
    """``<<v, ...>>``: a string, number or binary set."""

    items: tuple[ValueExpr, ...]


ValueExpr = Literal | Param | ListValue | MapValue | SetValue


@dataclass(frozen=True, slots=True)
class Value(Operand):
    """A literal or parameter inside a condition or update; bound to a ``Const`` later."""

    expr: ValueExpr


@dataclass(frozen=True, slots=True)
class Select:
    """``SELECT``: ``projection`` None for ``*``; ``order`` is ``(key, descending)`` pairs."""

    table: str
    index: str | None
    projection: tuple[PathRef, ...] | None
    where: Condition | None
    order: tuple[tuple[str, bool], ...]
    params: int


@dataclass(frozen=True, slots=True)
class Insert:
    """``INSERT INTO table VALUE item``."""

    table: str
    item: ValueExpr
    params: int


@dataclass(frozen=True, slots=True)
class Update:
    """``UPDATE``: the actions as an update expression, ``returning`` as ReturnValues."""

    table: str
    update: UpdateExpr
    where: Condition
    returning: str
    params: int


@dataclass(frozen=True, slots=True)
class Delete:
    """``DELETE FROM``; ``returning`` is "NONE" or "ALL_OLD"."""

    table: str
    where: Condition
    returning: str
    params: int


@dataclass(frozen=True, slots=True)
class ExistsCheck:
    """``EXISTS(SELECT ...)``: a condition check (transactions only)."""

    select: Select
    params: int


Statement = Select | Insert | Update | Delete | ExistsCheck

# --- the lexer -----------------------------------------------------------------------------------

_KEYWORDS: Final = frozenset(
    """SELECT FROM WHERE AND OR NOT BETWEEN IN IS MISSING NULL TRUE FALSE INSERT INTO VALUE
    VALUES UPDATE SET REMOVE DELETE RETURNING ORDER BY ASC DESC EXISTS AS LIKE""".split()  # noqa: SIM905
)
_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<id>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<qid>"(?:[^"]|"")*")
  | (?P<str>'(?:[^']|'')*')
  | (?P<op><<|>>|<>|!=|<=|>=|[-+*=<>(),.\[\]{}:?;])
    """,
    re.VERBOSE,
)
_FUNCTIONS: Final = frozenset(
    {"begins_with", "contains", "attribute_exists", "attribute_not_exists", "attribute_type"}
)
_COMPARATORS: Final = frozenset({"=", "<>", "!=", "<", "<=", ">", ">="})
_RETURNING: Final = {
    ("ALL", "OLD"): "ALL_OLD",
    ("MODIFIED", "OLD"): "UPDATED_OLD",
    ("ALL", "NEW"): "ALL_NEW",
    ("MODIFIED", "NEW"): "UPDATED_NEW",
}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # id qid num str op eof
    text: str
    pos: int

    @property
    def word(self) -> str | None:
        """The keyword this token is (upper-cased), if it is a bare keyword."""
        if self.kind == "id" and self.text.upper() in _KEYWORDS:
            return self.text.upper()
        return None


def _malformed(detail: str = "") -> ValidationError:
    return ValidationError(NOT_WELL_FORMED + detail)


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            # '#', an unterminated quote, '--' comments...: DynamoDB names nothing
            raise _malformed()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("eof", "", n))
    return out


# --- the parser ----------------------------------------------------------------------------------


class _Parser:
    __slots__ = ("depth", "i", "operators", "params", "toks")

    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.params = 0
        self.operators = 0
        self.depth = 0

    # tokens
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def at(self, op: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == op

    def at_word(self, *words: str) -> bool:
        return self.tok.word in words

    def unexpected(self) -> ValidationError:
        t = self.tok
        if t.kind == "eof":
            return _malformed("Unexpected end of statement")
        if t.word in ("IS", "LIKE"):
            return _malformed("Unexpected operator")
        if t.word is not None:
            return _malformed("Unexpected keyword")
        if t.kind == "op" and t.text in _COMPARATORS | {"+", "-", "*"}:
            return _malformed("Unexpected operator")
        return _malformed("Unexpected term")

    def expect(self, op: str) -> None:
        if not self.at(op):
            raise self.unexpected()
        self.take()

    def expect_word(self, word: str) -> None:
        if not self.at_word(word):
            raise self.unexpected()
        self.take()

    def count(self) -> None:
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            raise ValidationError(
                f"Too many operators in the statement (at most {MAX_OPERATORS} operators "
                "and functions)"
            )

    def end(self) -> None:
        if self.tok.kind != "eof":
            raise _malformed("Unexpected token after expression")

    # statements
    def statement(self) -> Statement:
        word = self.tok.word
        if word == "SELECT":
            stmt: Statement = self.select()
        elif word == "INSERT":
            stmt = self.insert()
        elif word == "UPDATE":
            stmt = self.update()
        elif word == "DELETE":
            stmt = self.delete()
        elif word == "EXISTS":
            self.take()
            self.expect("(")
            inner = self.select()
            self.expect(")")
            stmt = ExistsCheck(inner, 0)
        else:
            raise _malformed("Expected data manipulation")
        self.end()
        return _with_params(stmt, self.params)

    def name(self) -> str:
        t = self.tok
        if t.kind == "qid":
            self.take()
            name = t.text[1:-1].replace('""', '"')
            if not name:
                raise ValidationError("Path component cannot be an empty string")
            return name
        if t.kind == "id" and t.word is None:
            self.take()
            return t.text
        raise self.unexpected()

    def table(self, *, dml: bool) -> tuple[str, str | None]:
        if self.tok.kind == "eof" or self.tok.word is not None:
            raise _malformed("Expected identifier for simple path")
        table = self.name()
        index = None
        if self.at("."):
            self.take()
            index = self.name()
            if dml:
                raise ValidationError(
                    "FROM clause may only contain a single table name in data manipulation "
                    "statements"
                )
        if self.at_word("AS") or (self.tok.kind in ("id", "qid") and self.tok.word is None):
            raise ValidationError("Aliasing is not supported")
        return table, index

    def select(self) -> Select:
        self.expect_word("SELECT")
        projection: tuple[PathRef, ...] | None
        if self.at("*"):
            self.take()
            projection = None
            if self.at(","):
                raise ValidationError(
                    "Other attributes should not be present in the projection when '*' is used."
                )
        else:
            paths = [self.path()]
            while self.at(","):
                self.take()
                if self.at("*"):
                    raise ValidationError(
                        "Other attributes should not be present in the projection when '*' is used."
                    )
                paths.append(self.path())
            seen: set[tuple[object, ...]] = set()
            for p in paths:
                if p.elements in seen:
                    raise ValidationError(f"Duplicate identifiers in select clause: {_text(p)}")
                seen.add(p.elements)
            projection = tuple(paths)
        self.expect_word("FROM")
        table, index = self.table(dml=False)
        where = self.where(required=False)
        order: list[tuple[str, bool]] = []
        if self.at_word("ORDER"):
            self.take()
            self.expect_word("BY")
            while True:
                key = self.path()
                if len(key.elements) != 1:
                    raise ValidationError(
                        "Argument to ORDER BY must be of type VariableReference. Type: path"
                    )
                desc = False
                if self.at_word("ASC", "DESC"):
                    desc = self.take().text.upper() == "DESC"
                order.append((str(key.elements[0]), desc))
                if not self.at(","):
                    break
                self.take()
        return Select(table, index, projection, where, tuple(order), 0)

    def where(self, *, required: bool) -> Condition | None:
        if not self.at_word("WHERE"):
            if required:
                raise ValidationError(
                    "Where clause does not contain a mandatory equality on all key attributes"
                )
            return None
        self.take()
        if self.tok.kind == "eof" or self.at(";") or self.at_word("ORDER"):
            raise _malformed("Unexpected keyword" if self.at_word("ORDER") else "Unexpected term")
        return self.condition()

    def insert(self) -> Insert:
        self.expect_word("INSERT")
        self.expect_word("INTO")
        if self.tok.kind == "eof" or self.tok.word is not None:
            raise _malformed("Expected identifier for simple path")
        table = self.name()
        if self.at_word("VALUES"):
            raise ValidationError(
                "Unsupported operation: Inserting multiple items in a single statement is not "
                'supported, use "INSERT INTO tableName VALUE item" instead'
            )
        self.expect_word("VALUE")
        if not (self.at("{") or self.at("?")):
            raise ValidationError(
                "Unsupported format in item expression. Please use struct format {...} to "
                "express item values for insert statement."
            )
        item = self.value()
        if self.at_word("RETURNING"):
            raise ValidationError("RETURNING is not supported in INSERT")
        return Insert(table, item, 0)

    def update(self) -> Update:
        self.expect_word("UPDATE")
        table, _ = self.table(dml=True)
        sets: list[SetAction] = []
        removes: list[RemoveAction] = []
        adds: list[AddAction] = []
        deletes: list[DeleteAction] = []
        if not self.at_word("SET", "REMOVE"):
            raise self.unexpected()
        while self.at_word("SET", "REMOVE"):
            clause = self.take().text.upper()
            while True:
                if clause == "REMOVE":
                    removes.append(RemoveAction(self.path()))
                else:
                    self.assignment(sets, adds, deletes)
                if not self.at(","):
                    break
                self.take()
        where = self.where(required=True)
        assert where is not None
        returning = self.returning(("ALL", "MODIFIED"), ("OLD", "NEW"))
        expr = UpdateExpr(tuple(sets), tuple(removes), tuple(adds), tuple(deletes))
        return Update(table, expr, where, returning, 0)

    def assignment(
        self, sets: list[SetAction], adds: list[AddAction], deletes: list[DeleteAction]
    ) -> None:
        target = self.path()
        self.expect("=")
        t = self.tok
        fn = t.text.lower() if t.kind == "id" and self.toks[self.i + 1].text == "(" else None
        if fn in ("set_add", "set_delete"):
            self.take()
            self.expect("(")
            first = self.path()
            self.expect(",")
            members = self.value()
            self.expect(")")
            op = fn[4:].upper()
            if first != target:
                raise ValidationError(
                    f"The first argument to SET_{op} must equal the assignment value"
                )
            if not isinstance(members, (SetValue, Param)):
                raise ValidationError(
                    f"The second argument to SET_{op} must be a value with type SET"
                )
            if op == "ADD":
                adds.append(AddAction(target, Value(members)))
            else:
                deletes.append(DeleteAction(target, Value(members)))
            return
        if fn == "list_append":
            self.take()
            self.expect("(")
            a = self.update_operand()
            self.expect(",")
            b = self.update_operand()
            self.expect(")")
            sets.append(SetAction(target, ListAppend(a, b)))
            return
        result: Operand = self.update_operand()
        if self.at("+") or self.at("-"):
            op = self.take().text
            result = Arith(op, result, self.update_operand())
        sets.append(SetAction(target, result))

    def update_operand(self) -> Operand:
        if self.tok.kind in ("id", "qid") and self.tok.word is None:
            if self.tok.kind == "id" and self.toks[self.i + 1].text == "(":
                raise ValidationError(f"Unrecognized function: {self.tok.text}")
            return self.path()
        return Value(self.value())

    def delete(self) -> Delete:
        self.expect_word("DELETE")
        self.expect_word("FROM")
        table, _ = self.table(dml=True)
        where = self.where(required=True)
        assert where is not None
        returning = self.returning(("ALL",), ("OLD",))
        return Delete(table, where, returning, 0)

    def returning(self, first: tuple[str, ...], second: tuple[str, ...]) -> str:
        if not self.at_word("RETURNING"):
            return "NONE"
        self.take()
        a, b = self.take(), self.take()
        if a.text.upper() not in ("ALL", "MODIFIED") or b.text.upper() not in ("OLD", "NEW"):
            raise _malformed("Unexpected term")
        a_word, b_word = a.text.upper(), b.text.upper()
        if not self.at("*"):
            raise ValidationError(
                "Expected '*' after ( MODIFIED | ALL ) ( NEW | OLD ) in RETURNING clause"
            )
        self.take()
        if a_word not in first or b_word not in second:
            raise ValidationError(
                f"Invalid returning clause: RETURNING {a_word} {b_word}. Only RETURNING ALL "
                "OLD * is allowed in DELETE statements."
            )
        return _RETURNING[(a_word, b_word)]

    # conditions
    def condition(self) -> Condition:
        node = self.conjunction()
        while self.at_word("OR"):
            self.take()
            self.count()
            node = Or(node, self.conjunction())
        return node

    def conjunction(self) -> Condition:
        node = self.negation()
        while self.at_word("AND"):
            self.take()
            self.count()
            node = And(node, self.negation())
        return node

    def negation(self) -> Condition:
        nots = 0
        while self.at_word("NOT"):
            self.take()
            self.count()
            nots += 1
        node = self.primary()
        for _ in range(nots):
            node = Not(node)
        return node

    def missing_operand(self) -> ValidationError:
        if self.tok.kind == "eof":
            return _malformed("Missing right-hand side expression of infix operator")
        return self.unexpected()

    def primary(self) -> Condition:
        if self.tok.kind == "eof":
            prev = self.toks[self.i - 1] if self.i else None
            if prev is not None and prev.word in ("AND", "OR"):
                raise _malformed("Missing right-hand side expression of infix operator")
            raise _malformed("Unexpected term")
        if self.at("("):
            self.take()
            self.depth += 1
            if self.depth > _MAX_PARENS:
                raise ValidationError(f"Too many nested parentheses (at most {_MAX_PARENS})")
            inner = self.condition()
            self.expect(")")
            self.depth -= 1
            return inner
        t = self.tok
        if t.kind == "id" and self.toks[self.i + 1].text == "(":
            fn = t.text.lower()
            if fn in _FUNCTIONS:
                return self.function(fn)
            if fn != "size":
                raise ValidationError(f"Unrecognized function: {t.text}")
        left = self.operand()
        self.count()
        if self.at_word("IS"):
            self.take()
            negate = False
            if self.at_word("NOT"):
                self.take()
                negate = True
            if not isinstance(left, PathRef):
                raise ValidationError(
                    "The left hand side argument to IS must be a Variable Reference, Literal, "
                    "or Path"
                )
            if self.at_word("MISSING"):
                self.take()
                return Exists(left) if negate else NotExists(left)
            if self.tok.kind == "id":
                raise ValidationError(
                    f"IS {self.tok.text.upper()} is not supported yet by streamkit "
                    "(IS MISSING and IS NOT MISSING are)"
                )
            raise _malformed("Expected type name")
        negate = False
        if self.at_word("NOT"):
            self.take()
            negate = True
            if not self.at_word("BETWEEN", "IN"):
                raise self.unexpected()
        if self.at_word("BETWEEN"):
            self.take()
            low = self.operand()
            self.expect_word("AND")
            high = self.operand()
            node: Condition = Between(left, low, high)
        elif self.at_word("IN"):
            self.take()
            node = In(left, self.in_list())
        elif self.tok.kind == "op" and self.tok.text in _COMPARATORS:
            op = self.take().text
            right = self.operand()
            node = Compare("<>" if op == "!=" else op, left, right)
        else:
            raise self.missing_operand() if self.tok.kind == "eof" else self.unexpected()
        return Not(node) if negate else node

    def in_list(self) -> tuple[Operand, ...]:
        if not (self.at("[") or self.at("(")):
            raise ValidationError(
                "IN operator must have a left hand argument of type Variable Reference and "
                "right hand argument of type Seq with at least one member"
            )
        close = "]" if self.take().text == "[" else ")"
        options = [self.operand()]
        while self.at(","):
            self.take()
            options.append(self.operand())
            if len(options) > MAX_IN_OPERANDS:
                raise ValidationError(f"IN takes at most {MAX_IN_OPERANDS} values")
        self.expect(close)
        return tuple(options)

    def function(self, fn: str) -> Condition:
        self.take()
        self.expect("(")
        self.count()
        args = [self.operand()]
        while self.at(","):
            self.take()
            args.append(self.operand())
        self.expect(")")
        want = 1 if fn in ("attribute_exists", "attribute_not_exists") else 2
        if len(args) != want:
            raise ValidationError(f"Incorrect number of arguments to function {fn}: {len(args)}")
        if want == 1:
            path = args[0]
            if not isinstance(path, PathRef):
                raise ValidationError(f"The argument to {fn} must be a path")
            return Exists(path) if fn == "attribute_exists" else NotExists(path)
        a, b = args
        if fn == "begins_with":
            return BeginsWith(a, b)
        if fn == "contains":
            return Contains(a, b)
        return AttributeType(a, b)

    def operand(self) -> Operand:
        t = self.tok
        if t.kind == "id" and t.word is None and self.toks[self.i + 1].text == "(":
            if t.text.lower() != "size":
                raise ValidationError(f"Unrecognized function: {t.text}")
            self.take()
            self.expect("(")
            path = self.path()
            self.expect(")")
            return Size(path)
        if t.kind == "qid" or (t.kind == "id" and t.word is None):
            return self.path()
        if t.word == "MISSING":
            raise ValidationError("MISSING must be compared using IS operator")
        if t.kind == "eof":
            raise self.missing_operand()
        return Value(self.value())

    def path(self) -> PathRef:
        elements: list[str | int] = [self.name()]
        while self.at(".") or self.at("["):
            if self.take().text == ".":
                elements.append(self.name())
            else:
                t = self.tok
                if t.kind != "num" or not t.text.isdigit():
                    raise ValidationError("List index must be a non-negative integer literal")
                self.take()
                self.expect("]")
                elements.append(int(t.text))
            if len(elements) > _MAX_PATH_DEPTH + 1:
                raise ValidationError(
                    f"A document path may have at most {_MAX_PATH_DEPTH} dereferences"
                )
        return PathRef(tuple(elements))

    # values
    def value(self) -> ValueExpr:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + _MAX_PARENS:
                raise ValidationError("Nesting Levels have exceeded supported limits")
            return self._value()
        finally:
            self.depth -= 1

    def _value(self) -> ValueExpr:
        if self.tok.kind == "eof":
            raise self.missing_operand()
        t = self.take()
        if t.kind == "str":
            return Literal(t.text[1:-1].replace("''", "'"))
        if t.kind == "num" or (t.kind == "op" and t.text in "+-" and self.tok.kind == "num"):
            text = t.text if t.kind == "num" else t.text + self.take().text
            try:
                return Literal(Decimal(text))
            except InvalidOperation:  # pragma: no cover - the lexer only passes numbers
                raise _malformed() from None
        if t.kind == "op" and t.text == "?":
            self.params += 1
            return Param(self.params - 1)
        if t.word in ("TRUE", "FALSE"):
            return Literal(t.word == "TRUE")
        if t.word == "NULL":
            return Literal(None)
        if t.kind == "op" and t.text in ("[", "<<"):
            close = "]" if t.text == "[" else ">>"
            items: list[ValueExpr] = []
            while not self.at(close):
                items.append(self.value())
                if not self.at(","):
                    break
                self.take()
            self.expect(close)
            if close == ">>":
                if not items:
                    raise ValidationError("Empty bags are not supported")
                return SetValue(tuple(items))
            return ListValue(tuple(items))
        if t.kind == "op" and t.text == "{":
            entries: list[tuple[str, ValueExpr]] = []
            seen: set[str] = set()
            while not self.at("}"):
                k = self.tok
                if k.kind != "str":
                    raise ValidationError(
                        f"Tuple keys must be of type String. Actual type: {_kind(k)} under root"
                    )
                self.take()
                key = k.text[1:-1].replace("''", "'")
                if key in seen:
                    raise ValidationError(f"Duplicate keys in tuple. Key: {key} under root")
                seen.add(key)
                self.expect(":")
                entries.append((key, self.value()))
                if not self.at(","):
                    break
                self.take()
            self.expect("}")
            return MapValue(tuple(entries))
        if t.word == "MISSING":
            raise ValidationError("MISSING must be compared using IS operator")
        self.i -= 1
        raise self.unexpected()


def _kind(t: _Tok) -> str:
    return {"num": "decimal", "id": "symbol", "qid": "symbol"}.get(t.kind, "expression")


def _text(p: PathRef) -> str:
    return "".join(
        f"[{e}]" if type(e) is int else (f".{e}" if i else str(e)) for i, e in enumerate(p.elements)
    )


def _with_params(stmt: Statement, n: int) -> Statement:
    if isinstance(stmt, ExistsCheck):
        return ExistsCheck(replace(stmt.select, params=n), n)
    return replace(stmt, params=n)


def parse_statement(text: str) -> Statement:
    """Parse one PartiQL statement.

    Raises:
        ValidationError: the statement is not one DynamoDB runs, in DynamoDB's words.
    """
    if not isinstance(text, str):
        raise ValidationError(f"a statement is a str, got {type(text).__name__}")
    if not 1 <= len(text) <= MAX_STATEMENT_LENGTH:
        raise ValidationError(
            "1 validation error detected: Value at 'statement' failed to satisfy constraint: "
            f"Member must have length between 1 and {MAX_STATEMENT_LENGTH}"
        )
    return _parse(text)


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> Statement:
    # statements are immutable trees, and applications run the same few texts with
    # different parameters: parse each once
    return _Parser(text).statement()
