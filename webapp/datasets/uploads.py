"""An upload handler that enforces ``MAX_UPLOAD_MB`` before and while a request body streams in.

Installed first in ``FILE_UPLOAD_HANDLERS``. A body whose Content-Length is already too large is
refused at the first chunk, without reading the rest; one that grows too large is cut off when it
passes the limit. Either way the request gets ``request.upload_error`` (a message for the user)
and no file, and the temporary file on disk is removed by Django's handler.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

_FORM_SLACK = 1 << 20  # multipart boundaries and the other form fields


def max_upload_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024


def too_large_message() -> str:
    return f"The file is larger than this server's upload limit of {settings.MAX_UPLOAD_MB:,} MB (CUPOLA_MAX_UPLOAD_MB)."


class SizeLimitedUploadHandler(FileUploadHandler):
    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.received = 0
        self.refused = content_length is not None and content_length > max_upload_bytes() + _FORM_SLACK
        if self.refused and self.request is not None:
            self.request.upload_error = too_large_message()
        return None

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.refused or self.received > max_upload_bytes():
            if self.request is not None:
                self.request.upload_error = too_large_message()
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None
