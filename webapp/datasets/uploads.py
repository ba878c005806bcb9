"""An upload handler that enforces ``MAX_UPLOAD_MB`` before and while a request body streams in.

Installed first in ``FILE_UPLOAD_HANDLERS``. A body whose Content-Length is already too large is
refused at the first chunk, without reading the rest; one that grows too large is cut off when it
passes the limit. Either way the request gets ``request.upload_error`` (a message for the user)
and no file, and the temporary file on disk is removed by Django's handler.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
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

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.refused or self.received > max_upload_bytes():
            if self.request is not None:
                self.request.upload_error = too_large_message()
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None


def save_upload(upload, *, workspace, user, dataset, data):
    """Hand the streamed upload to the service: a temporary file is moved, a small in-memory one written out."""
    options = {"kind": data["kind"], "image_size": data["image_size"]}
    if isinstance(upload, TemporaryUploadedFile):
        path, move = upload.temporary_file_path(), True
    else:
        with tempfile.NamedTemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR, delete=False) as f:
            for chunk in upload.chunks():
                f.write(chunk)
        path, move = f.name, True
    from webapp.datasets import services

    try:
        if dataset is None:
            return services.dataset_create_from_file(
                workspace=workspace, user=user, name=data["name"], description=data["description"],
                uploaded_file_path=path, original_filename=upload.name, move=move, **options)
        return services.version_create_from_file(dataset=dataset, user=user, uploaded_file_path=path,
                                                 original_filename=upload.name, move=move, **options)
    finally:
        Path(path).unlink(missing_ok=True)  # left behind only when the service refused the file
