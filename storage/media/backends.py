"""The media backend ``MEDIA_BACKEND`` names, made once per process (storage/media/__init__.py: the interface)."""

from __future__ import annotations

import functools

from domain.signing import UrlSigner
from domain.tokens import MEDIA_URL, derive_key
from storage.config import Settings
from storage.media import MediaBackend


def create_backend(settings: Settings, signer: UrlSigner) -> MediaBackend:
    """The backend ``MEDIA_BACKEND`` names (``local`` or ``gcs``)."""
    if settings.media_backend == "local":
        from storage.media.local import LocalBackend

        return LocalBackend(settings.media_dir, settings.public_base_url, signer)
    if settings.media_backend == "gcs":
        from storage.media.gcs import GcsBackend

        return GcsBackend(
            settings.gcs_bucket,
            emulator_host=settings.storage_emulator_host,
            credentials_file=settings.gcs_credentials_file,
            project=settings.gcs_project,
        )
    raise ValueError(f"MEDIA_BACKEND={settings.media_backend!r}: use local or gcs")


def url_signer(settings: Settings) -> UrlSigner:
    """The media-URL signer of this secret (HKDF once per process and secret, not per read)."""
    return _signer_of(settings.jwt_secret)


@functools.lru_cache(maxsize=4)
def _signer_of(secret: str) -> UrlSigner:
    return UrlSigner(derive_key(secret, MEDIA_URL))
