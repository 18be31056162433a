"""Parsing request bodies into `FormData`: urlencoded forms and multipart uploads.

`FormParser` reads an ``application/x-www-form-urlencoded`` body whole (the request's body
limit bounds it) with no per-byte callbacks. A small body is split in one call to
`urllib.parse.parse_qsl`; a larger one has its fields counted and measured before any is
decoded, and is then decoded field by field in slices, with a checkpoint between slices
(see `triolette._urlencoded`), so a hostile body neither takes memory out of proportion
to its size nor holds the event loop.

`MultiPartParser` streams ``multipart/form-data`` through python-multipart (the ``forms``
extra). Text fields are kept in memory up to ``max_part_size``; files go to a
``SpooledTemporaryFile`` that stays in memory up to 1 MiB, wrapped in an `UploadFile` whose
writes move to a worker thread once the file has rolled over to disk.

Every limit raises `MultiPartException`, whose message says which limit was hit; the
request layer answers it with a 400.
"""

from __future__ import annotations

import enum
import math
import re
import warnings
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, unquote_plus

import trio

from triolette import _urlencoded
from triolette._utils import aclosing_if_closable as _closing  # the parser owns (and closes) its stream
from triolette.datastructures import FormData, Headers, UploadFile
from triolette.exceptions import TrioletteDeprecationWarning

try:
    from python_multipart import MultipartParser as _MultipartParser
    from python_multipart.exceptions import FormParserError as _FormParserError
    from python_multipart.multipart import parse_options_header as _parse_options_header

    _HAVE_MULTIPART = True
except ModuleNotFoundError:  # pragma: no cover - only without the 'forms' extra
    _HAVE_MULTIPART = False

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["FormMessage", "FormParser", "MultiPartException", "MultiPartParser", "MultipartPart"]


class _DeprecatedEnumType(enum.EnumType):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            "`FormMessage` is deprecated and will be removed in a future version.",
            TrioletteDeprecationWarning,
            stacklevel=2,
        )
        return super().__call__(*args, **kwargs)


class FormMessage(enum.Enum, metaclass=_DeprecatedEnumType):
    """The events of a urlencoded parse. Deprecated, as in Starlette: ``FormMessage(value)`` warns."""

    FIELD_START = 1
    FIELD_NAME = 2
    FIELD_DATA = 3
    FIELD_END = 4
    END = 5


@dataclass
class MultipartPart:
    """The part of a multipart body being parsed: its headers, and its data or file."""

    content_disposition: bytes | None = None
    field_name: str = ""
    data: bytearray = field(default_factory=bytearray)
    file: UploadFile | None = None
    item_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class MultiPartException(Exception):
    """A form body broke a limit or could not be parsed; ``message`` says why (answer 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _too_many_fields(max_fields: float) -> MultiPartException:
    return MultiPartException(f"Too many fields. Maximum number of fields is {max_fields}.")


class FormParser:
    """Parses an ``application/x-www-form-urlencoded`` body into `FormData`.

    ``max_fields`` bounds the number of fields, ``max_part_size`` the encoded size of one
    field (name and value). Bytes are read as latin-1 and percent-escapes as UTF-8
    (invalid sequences become U+FFFD), as Starlette does.
    """

    def __init__(
        self,
        headers: Headers,
        stream: AsyncIterable[bytes],
        *,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> None:
        self.headers = headers
        self.stream = stream
        self.max_fields = max_fields
        self.max_part_size = max_part_size
        self._current_field_size = 0
        self._current_fields = 0
        self._field_name = bytearray()
        self._field_value = bytearray()
        self._items: list[tuple[str, str | UploadFile]] = []
        self._decoded_since_checkpoint = 0

    # The four hooks below are the callbacks of Starlette's streaming parser, kept so that code
    # which drives them (python_multipart.QuerystringParser) still works. `parse` does not use
    # them, so overriding them does not change what `parse` returns.

    def on_field_start(self) -> None:
        """Hook: a field begins. Not called by `parse`."""
        self._current_field_size = 0
        self._field_name = bytearray()
        self._field_value = bytearray()

    def on_field_name(self, data: bytes, start: int, end: int) -> None:
        """Hook: ``data[start:end]`` is more of the field's name. Not called by `parse`."""
        self._grow_field(end - start)
        self._field_name += data[start:end]

    def on_field_data(self, data: bytes, start: int, end: int) -> None:
        """Hook: ``data[start:end]`` is more of the field's value. Not called by `parse`."""
        self._grow_field(end - start)
        self._field_value += data[start:end]

    def on_field_end(self) -> None:
        """Hook: the field is complete. Not called by `parse`."""
        self._current_fields += 1
        if self._current_fields > self.max_fields:
            raise _too_many_fields(self.max_fields)
        name = unquote_plus(self._field_name.decode("latin-1"))
        value = unquote_plus(self._field_value.decode("latin-1"))
        self._items.append((name, value))

    def _grow_field(self, size: int) -> None:
        self._current_field_size += size
        if self._current_field_size > self.max_part_size:
            raise self._field_too_large()

    def _field_too_large(self) -> MultiPartException:
        return MultiPartException(f"Field exceeded maximum size of {int(self.max_part_size / 1024)}KB.")

    small_body_size = 8 * 1024
    """Bodies up to this size are decoded in one call; larger ones field by field, yielding between slices."""
    slice_size = 64 * 1024
    """How many encoded bytes a large body's parse decodes between two checkpoints."""
    spans_per_checkpoint = 10_000
    """How many fields a large body's parse finds between two checkpoints."""

    async def parse(self) -> FormData:
        """Read the whole body and return its fields, in order.

        The number of fields and the encoded size of each are checked before any of it is
        decoded. A body larger than `small_body_size` is decoded in slices of `slice_size`
        bytes with a checkpoint after each, so other requests are served during the parse.
        """
        body = bytearray()  # grown chunk by chunk: no second copy of the whole body to join
        async with _closing(self.stream):
            async for chunk in self.stream:
                body += chunk
        limit = None if math.isinf(self.max_fields) else math.floor(self.max_fields)
        if len(body) <= self.small_body_size:
            return FormData(self._parse_small(body, limit))
        spans: list[tuple[int, int, int]] = []
        for span in _urlencoded.field_spans(body):
            if len(spans) == limit:
                raise _too_many_fields(self.max_fields)
            spans.append(span)
            if len(spans) % self.spans_per_checkpoint == 0:  # only with a very high max_fields
                await trio.lowlevel.checkpoint()
        for start, equals, end in spans:
            if end - start - (equals < end) > self.max_part_size:
                raise self._field_too_large()
        items: list[tuple[str, str | UploadFile]] = []
        for start, equals, end in spans:
            name = await self._decode(body[start:equals])
            items.append((name, await self._decode(body[equals + 1 : end])))
        return FormData(items)

    async def _decode(self, raw: bytearray) -> str:
        decoded = bytearray()
        for piece in _urlencoded.slices(raw, self.slice_size):
            # at most slice_size bytes are decoded between two checkpoints
            if self._decoded_since_checkpoint + len(piece) > self.slice_size:
                await trio.lowlevel.checkpoint()
                self._decoded_since_checkpoint = 0
            decoded += _urlencoded.percent_decode(piece)
            self._decoded_since_checkpoint += len(piece)
        return decoded.decode("utf-8", "replace")

    def _parse_small(self, body: bytearray, limit: int | None) -> list[tuple[str, str | UploadFile]]:
        # latin-1 maps each byte to one code point, so the text has the body's length and the
        # percent-escapes are decoded as UTF-8 by parse_qsl.
        text = body.decode("latin-1")
        try:
            items = parse_qsl(text, keep_blank_values=True, errors="replace", max_num_fields=limit)
        except ValueError:
            # parse_qsl counts separators, and empty fields ("a=1&&b=2", a trailing "&") count
            # too; count only the fields there are before refusing.
            text = re.sub("&&+", "&", text).strip("&")
            try:
                items = parse_qsl(text, keep_blank_values=True, errors="replace", max_num_fields=limit)
            except ValueError:
                raise _too_many_fields(self.max_fields) from None
        if len(text) > self.max_part_size:
            for encoded in text.split("&"):
                if len(encoded) - ("=" in encoded) > self.max_part_size:
                    raise self._field_too_large()
        # parse_qsl's list[tuple[str, str]] is what FormData takes; list invariance hides it from mypy.
        return cast("list[tuple[str, str | UploadFile]]", items)


_HEADER_LIMITS = {
    "Maximum header size exceeded": "Invalid multipart data: a part's header is too large.",
    "Maximum header count exceeded": "Invalid multipart data: a part has too many headers.",
    "Boundary length": "Invalid multipart data: the boundary is too long.",
}


def _parse_error_message(exc: Exception) -> str:
    # python-multipart's messages carry offsets and bytes of the body; only its limits are named.
    text = str(exc)
    for prefix, message in _HEADER_LIMITS.items():
        if text.startswith(prefix):
            return message
    return "Invalid multipart data."


def _decode(raw: bytes | bytearray, charset: str) -> str:
    try:
        return raw.decode(charset)
    except UnicodeError:
        return raw.decode("latin-1")


class MultiPartParser:
    """Parses a ``multipart/form-data`` body into `FormData` with python-multipart.

    ``max_files`` and ``max_fields`` bound the number of file and text parts,
    ``max_part_size`` the size of one text part (files are bounded by the request's body
    limit only). Names, filenames and text values are decoded with the ``charset`` of the
    request's ``Content-Type`` (UTF-8 by default), falling back to latin-1 for a value that
    does not decode.
    """

    spool_max_size = 1024 * 1024
    """How much of each file is kept in memory before its spooled file rolls over to disk."""
    max_part_size = 1024 * 1024
    """The largest text part accepted, in bytes."""

    def __init__(
        self,
        headers: Headers,
        stream: AsyncIterable[bytes],
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> None:
        if not _HAVE_MULTIPART:  # pragma: no cover - only without the 'forms' extra
            raise RuntimeError("Parsing multipart forms needs python-multipart: pip install 'triolette[forms]'.")
        self.headers = headers
        self.stream = stream
        self.max_files = max_files
        self.max_fields = max_fields
        self.max_part_size = max_part_size
        self.items: list[tuple[str, str | UploadFile]] = []
        self._current_files = 0
        self._current_fields = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._current_part = MultipartPart()
        self._part_open = False
        self._charset = "utf-8"
        # File I/O is async, the callbacks are not: they queue it for `parse` to do after each chunk.
        self._file_writes: list[tuple[UploadFile, bytes]] = []
        self._files_to_rewind: list[UploadFile] = []
        self._files: list[UploadFile] = []

    def on_part_begin(self) -> None:
        """python-multipart callback: a part begins."""
        self._current_part = MultipartPart()
        self._part_open = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        """python-multipart callback: ``data[start:end]`` is more of the part's body."""
        part = self._current_part
        if part.file is not None:
            self._file_writes.append((part.file, data[start:end]))
        elif len(part.data) + (end - start) > self.max_part_size:
            raise MultiPartException(f"Part exceeded maximum size of {int(self.max_part_size / 1024)}KB.")
        else:
            part.data += data[start:end]

    def on_part_end(self) -> None:
        """python-multipart callback: the part is complete."""
        part = self._current_part
        self._part_open = False
        if part.file is None:
            self.items.append((part.field_name, _decode(part.data, self._charset)))
        else:
            # Its last writes are still queued; `parse` does them, then rewinds the file.
            self._files_to_rewind.append(part.file)
            self.items.append((part.field_name, part.file))

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        """python-multipart callback: ``data[start:end]`` is more of a header's name."""
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        """python-multipart callback: ``data[start:end]`` is more of a header's value."""
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        """python-multipart callback: one header of the part is complete."""
        name = bytes(self._header_name).lower()
        value = bytes(self._header_value)
        if name == b"content-disposition":
            self._current_part.content_disposition = value
        self._current_part.item_headers.append((name, value))
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        """python-multipart callback: the part's headers are complete; its data follows."""
        part = self._current_part
        _, options = _parse_options_header(part.content_disposition)
        if b"name" not in options:
            raise MultiPartException('The Content-Disposition header field "name" must be provided.')
        part.field_name = _decode(options[b"name"], self._charset)
        if b"filename" in options:
            self._current_files += 1
            if self._current_files > self.max_files:
                raise MultiPartException(f"Too many files. Maximum number of files is {self.max_files}.")
            # The file outlives this call: FormData.close() closes it, or _close_files() on error.
            spooled = SpooledTemporaryFile(max_size=self.spool_max_size)  # noqa: SIM115
            part.file = UploadFile(
                spooled,  # type: ignore[arg-type]  # typeshed's SpooledTemporaryFile is an IO[bytes], not a BinaryIO
                size=0,
                filename=_decode(options[b"filename"], self._charset),
                headers=Headers(raw=part.item_headers),
            )
            self._files.append(part.file)
        else:
            self._current_fields += 1
            if self._current_fields > self.max_fields:
                raise _too_many_fields(self.max_fields)

    def on_end(self) -> None:
        """python-multipart callback: the closing boundary was read."""

    async def parse(self) -> FormData:
        """Read the body and return its fields and files, in order.

        On any error, files opened so far are closed before the exception propagates.
        """
        _, params = _parse_options_header(self.headers.get("content-type"))
        charset = params.get(b"charset", b"utf-8").decode("latin-1")
        try:
            b"-".decode(charset)
        except LookupError:  # unknown, or not a text encoding (base64)
            charset = "latin-1"
        except UnicodeError:  # a text encoding that wants more than one byte
            pass
        self._charset = charset
        boundary = params.get(b"boundary")
        if not boundary:
            raise MultiPartException("Missing boundary in multipart.")

        callbacks: MultipartCallbacks = {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }
        try:
            async with _closing(self.stream):
                parser = _MultipartParser(boundary, callbacks)
                async for chunk in self.stream:
                    parser.write(chunk)
                    await self._do_file_io()
            parser.finalize()
        except BaseException as exc:
            self._close_files()
            if isinstance(exc, _FormParserError):
                raise MultiPartException(_parse_error_message(exc)) from exc
            raise
        if self._part_open and self._current_part.file is not None:
            # The body ended inside a file part: the part is dropped, as Starlette does, and closed.
            self._current_part.file.file.close()
        return FormData(self.items)

    async def _do_file_io(self) -> None:
        for upload, data in self._file_writes:
            await upload.write(data)
        self._file_writes.clear()
        for upload in self._files_to_rewind:
            await upload.seek(0)
        self._files_to_rewind.clear()

    def _close_files(self) -> None:
        # Synchronous on purpose: this also runs when the parse is cancelled, where nothing can
        # be awaited; closing a temporary file does not wait on the disk.
        for upload in self._files:
            upload.file.close()
