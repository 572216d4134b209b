"""The query language: text → tokens → syntax tree → parameterised SQL over the records table.

``parse(text)`` gives a :class:`~collector.query.ast.Query` or raises
:class:`~collector.query.errors.QueryError` with the position of the mistake and what was
expected; ``compile_query`` turns a query into one SQL statement whose operands are all bound
parameters, scoped to the caller's sites; ``execute`` runs it on a read-only connection under a
time limit and an authorizer that only lets it read the record store.
"""

from collector.query.ast import Query
from collector.query.compiler import Compiled, compile_query
from collector.query.errors import QueryError, QueryTimeout
from collector.query.parser import parse
from collector.query.run import Result, execute

__all__ = [
    "Compiled",
    "Query",
    "QueryError",
    "QueryTimeout",
    "Result",
    "compile_query",
    "execute",
    "parse",
]
