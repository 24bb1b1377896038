"""S3 XML: rendering replies and safely parsing the small XML bodies clients send.

Replies use the ``http://s3.amazonaws.com/doc/2006-03-01/`` namespace (error documents have none,
like S3's). Request bodies (CompleteMultipartUpload, Delete, CreateBucketConfiguration) are parsed
with expat directly and any document type declaration is refused, so no entity can be declared
and neither entity-expansion bombs nor external entities are possible; size, depth and element
count are bounded too.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.parsers import expat

from cloudtuner.storage import errors

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
MAX_XML_BODY = 4 * 1024 * 1024
_MAX_DEPTH = 16
_MAX_ELEMENTS = 50_000
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

#: A reply element: ``(name, text)`` for a leaf, ``(name, [children])`` for a branch.
#: ``None`` children are skipped, which keeps optional elements terse at the call site.
Node = tuple[str, "str | Sequence[Node | None]"]


def escape(text: str) -> str:
    """Escape ``text`` for XML character data; characters XML 1.0 cannot carry become U+FFFD."""
    text = _INVALID_XML_CHARS.sub("\ufffd", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _render_node(node: Node, out: list[str]) -> None:
    name, content = node
    if isinstance(content, str):
        out.append(f"<{name}>{escape(content)}</{name}>")
        return
    out.append(f"<{name}>")
    for child in content:
        if child is not None:
            _render_node(child, out)
    out.append(f"</{name}>")


def render(root: str, children: Iterable[Node | None], *, namespace: str | None = S3_NAMESPACE) -> bytes:
    """Render an XML document ``<root xmlns=namespace>children</root>`` with its declaration."""
    out = [XML_DECLARATION, f'<{root} xmlns="{namespace}">' if namespace else f"<{root}>"]
    for child in children:
        if child is not None:
            _render_node(child, out)
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def timestamp(moment: datetime) -> str:
    """Format ``moment`` as S3 does in XML: ``2024-01-31T12:00:00.000Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def boolean(value: bool) -> str:
    """Format a boolean as S3 does in XML."""
    return "true" if value else "false"


@dataclass
class XmlElement:
    """A parsed element: local name (namespace dropped), text, and child elements."""

    tag: str
    text: str = ""
    children: list[XmlElement] = field(default_factory=list)

    def find(self, tag: str) -> XmlElement | None:
        """Return the first child named ``tag``, or None."""
        return next((child for child in self.children if child.tag == tag), None)

    def find_all(self, tag: str) -> list[XmlElement]:
        """Return every child named ``tag``, in document order."""
        return [child for child in self.children if child.tag == tag]

    def child_text(self, tag: str) -> str | None:
        """Return the stripped text of the first child named ``tag``, or None if there is none."""
        child = self.find(tag)
        return None if child is None else child.text.strip()


class _RefusedXMLError(Exception):
    pass


def parse(document: bytes) -> XmlElement:
    """Parse a small XML request body; raise MalformedXML if it is not well-formed or uses a DTD."""
    if len(document) > MAX_XML_BODY:
        raise errors.MaxMessageLengthExceeded()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[XmlElement] = []
    texts: list[list[str]] = []
    result: list[XmlElement] = []
    count = 0

    def refuse(*_args: object) -> None:
        raise _RefusedXMLError

    def refuse_entity(*_args: object) -> int:
        raise _RefusedXMLError

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count > _MAX_ELEMENTS or len(stack) >= _MAX_DEPTH:
            raise _RefusedXMLError
        element = XmlElement(tag=name.rsplit(" ", 1)[-1])
        if stack:
            stack[-1].children.append(element)
        else:
            result.append(element)
        stack.append(element)
        texts.append([])

    def end(_name: str) -> None:
        element = stack.pop()
        element.text = "".join(texts.pop())

    def characters(data: str) -> None:
        if texts:
            texts[-1].append(data)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(document, True)
    except (_RefusedXMLError, expat.ExpatError):
        raise errors.MalformedXML() from None
    if len(result) != 1:
        raise errors.MalformedXML()
    return result[0]


async def read_body(body: AsyncIterator[bytes], limit: int = MAX_XML_BODY) -> bytes:
    """Read a small request body completely; raise MaxMessageLengthExceeded past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise errors.MaxMessageLengthExceeded()
        chunks.append(chunk)
    return b"".join(chunks)


def error_document(error: errors.S3Error, resource: str, request_id: str) -> bytes:
    """Render the S3 error XML for ``error`` (no namespace, as S3 sends it)."""
    children: list[Node | None] = [("Code", error.code), ("Message", error.message)]
    children.extend((name, value) for name, value in error.fields.items())
    children.extend([("Resource", resource), ("RequestId", request_id)])
    return render("Error", children, namespace=None)
