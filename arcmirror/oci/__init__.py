"""Leaf types: OCI media types, digests, manifests, platforms, references, referrers, errors.

Pure data and pure functions: no I/O, no threads, and no import of any other arcmirror module, so
everything else can import them (like go-containerregistry's ``pkg/v1`` and regclient's ``types``).
"""
