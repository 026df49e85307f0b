"""Reading the viewer's HTML as a browser would parse it (the standard library's parser), for the HTTP tests."""

from __future__ import annotations

from html.parser import HTMLParser

_VOID = frozenset(("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"))


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parts: list[str] = []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


class Page(HTMLParser):
    """The text a reader sees (outside script and style), every element, and each element's own text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[Node] = []
        self.script_bodies: list[str] = []
        self._open: list[Node] = []
        self._texts: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.nodes.append(node)
        if tag not in _VOID:
            self._open.append(node)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        tags = [node.tag for node in self._open]
        if "script" in tags:
            self.script_bodies.append(data)
            return
        if "style" in tags:
            return
        self._texts.append(data)
        for node in self._open:
            node.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._texts).split())

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [node.attrs for node in self.nodes if node.tag == name]

    def by_class(self, name: str) -> list[Node]:
        return [node for node in self.nodes if name in node.classes]

    def by_id(self, name: str) -> Node:
        (node,) = [node for node in self.nodes if node.attrs.get("id") == name]
        return node

    def has_attribute_starting(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for node in self.nodes for key in node.attrs)
