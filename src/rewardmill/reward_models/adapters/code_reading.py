"""Facts about a model's own Python code, read as text with `ast` (never imported or run).

Used to recognise seed-001-style regression models under any repo name: a config class that subclasses an
encoder's config, an encoder model built inside the model class, and a forward that returns the reward
tensor itself rather than an output object.
"""

from __future__ import annotations

import ast


def _parse(code: str | None) -> ast.Module | None:
    if not code:
        return None
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _name(node: ast.AST) -> str:
    """`BertConfig` for both `BertConfig` and `transformers.BertConfig`."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    return next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name), None)


def config_bases(code: str | None) -> set[str]:
    """Names of the classes that the config classes in `code` subclass (e.g. {'BertConfig'})."""
    tree = _parse(code)
    if tree is None:
        return set()
    return {_name(base) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for base in node.bases
            if _name(base).endswith("Config")}


def classes_built(code: str | None, class_name: str) -> set[str]:
    """Names called inside `class_name` (and the classes it inherits from within the same file): the
    submodules it builds, e.g. {'BertModel', 'Linear'}. A `X.from_pretrained(...)`/`X.from_config(...)`
    call counts as building X."""
    tree = _parse(code)
    cls = _class(tree, class_name) if tree else None
    found: set[str] = set()
    seen: set[str] = set()
    while cls is not None and cls.name not in seen:
        seen.add(cls.name)
        for node in ast.walk(cls):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr in ("from_pretrained", "from_config"):
                    func = func.value
                found.add(_name(func))
        parent = next((_name(b) for b in cls.bases if tree and _class(tree, _name(b))), None)
        cls = _class(tree, parent) if parent else None
    return found - {""}


def forward_returns_tensor(code: str | None, class_name: str) -> bool:
    """True when `class_name.forward` takes input_ids and every `return` gives a tensor expression (an
    arithmetic result, a call on a submodule, an indexed tensor), not an output object or a dict."""
    tree = _parse(code)
    cls = _class(tree, class_name) if tree else None
    forward = next((n for n in (cls.body if cls else []) if isinstance(n, ast.FunctionDef) and n.name == "forward"), None)
    if forward is None or "input_ids" not in [a.arg for a in forward.args.args]:
        return False
    returns = [n.value for n in ast.walk(forward) if isinstance(n, ast.Return) and n.value is not None]

    def tensor_like(node: ast.AST) -> bool:
        if isinstance(node, (ast.Dict, ast.Tuple, ast.List, ast.Constant)):
            return False
        if isinstance(node, ast.Call):
            called = _name(node.func)
            return not (called.endswith("Output") or called in ("dict", "tuple", "list"))
        return isinstance(node, (ast.BinOp, ast.Subscript, ast.Attribute, ast.Name, ast.UnaryOp))

    return bool(returns) and all(tensor_like(node) for node in returns)
