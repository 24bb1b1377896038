"""The ``input`` of a SimpleTuner trainer prediction, built from a :class:`RunRequest`. Pure.

The trainer (``simpletuner/advanced-trainer*``, reference section 11) takes ``config_json``,
``dataloader_json``, ``images``, ``max_train_steps``, ``hub_model_id``, ``hf_token``, the
``s3_*`` publishing fields, ``lycoris_config`` and ``return_logs``. cloudtuner sends only keys from
:data:`TRAINER_INPUTS`, never anything else.

``config_json`` is the JSON text of ``request.config`` with ``--tracker_run_name`` set (see
:func:`effective_run_name`), serialised deterministically (sorted keys, fixed separators): the same
job always gives the same text, whatever order its keys came back from the database in. That is
what lets :meth:`ReplicateProvider.find_job_by_reference` recognise the run by its text.
"""

from __future__ import annotations

import json
from typing import Any

from cloudtuner.providers.base import DeliveryTarget, RunRequest
from cloudtuner.providers.replicate.mapping import RUN_NAME_KEYS, run_name_for

TRAINER_INPUTS = frozenset(
    {
        "images",
        "config_json",
        "dataloader_json",
        "max_train_steps",
        "s3_bucket",
        "s3_region",
        "s3_endpoint_url",
        "s3_base_path",
        "s3_public_base_url",
        "s3_access_key",
        "s3_secret_key",
        "hub_model_id",
        "hf_token",
        "lycoris_config",
        "return_logs",
    }
)
"""Every input the trainer declares (its Cog ``Input`` schema)."""

SECRET_INPUTS = frozenset({"hf_token", "s3_access_key", "s3_secret_key"})
"""Inputs that carry credentials: never logged, never kept in memory after the call."""

S3_PUBLISHING_KEYS = (
    "s3_bucket",
    "s3_region",
    "s3_endpoint_url",
    "s3_base_path",
    "s3_public_base_url",
    "s3_access_key",
    "s3_secret_key",
)

WEBHOOK_EVENTS = ("start", "output", "logs", "completed")


def canonical_json(value: Any) -> str:
    """Return ``value`` as JSON text with sorted keys and fixed separators (same value, same text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def effective_run_name(request: RunRequest) -> str:
    """Return the tracker run name the run gets.

    ``request.tracker_run_name`` when set; otherwise the config's own ``--tracker_run_name`` when
    it has one (the user chose it); otherwise ``cloudtuner-<job id>``, which also lets the run be
    found by its job id alone (after a restart).
    """
    if request.tracker_run_name:
        return request.tracker_run_name
    for key in RUN_NAME_KEYS:
        value = request.config.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return run_name_for(request.job_id)


def publishing_arguments(publishing: dict[str, Any] | None) -> dict[str, Any]:
    """Return the trainer arguments a job's stored publishing settings add to its config.

    A Hub delivery sets ``--model_card_private`` (the repository's visibility; the trainer has no
    input for it). Derived from the stored settings only, so every attempt sends the same text.
    """
    if publishing and publishing.get("destination") == "huggingface":
        return {"--model_card_private": bool(publishing.get("private", True))}
    return {}


def config_text(request: RunRequest) -> str:
    """Return the ``config_json`` text sent for ``request`` (deterministic; see the module docstring)."""
    config = {key: value for key, value in request.config.items() if key not in RUN_NAME_KEYS}
    config.update(publishing_arguments(request.publishing))
    config["--tracker_run_name"] = effective_run_name(request)
    return canonical_json(config)


def dataloader_text(request: RunRequest) -> str:
    """Return the ``dataloader_json`` text sent for ``request`` (deterministic)."""
    return canonical_json(request.dataloader_config)


def delivery_inputs(delivery: DeliveryTarget) -> dict[str, Any]:
    """Return the trainer inputs for a run's delivery: ``hub_model_id`` and ``hf_token`` for the Hub;
    the ``s3_*`` inputs for S3 and for local download (the server's built-in endpoint)."""
    inputs: dict[str, Any] = {}
    if delivery.hub is not None:
        inputs["hub_model_id"] = delivery.hub.repo_id
        if delivery.hub.token:
            inputs["hf_token"] = delivery.hub.token
    if delivery.s3 is not None:
        target = delivery.s3
        values = {
            "s3_bucket": target.bucket,
            "s3_base_path": target.prefix,
            "s3_endpoint_url": target.endpoint_url,
            "s3_region": target.region,
            "s3_access_key": target.access_key_id,
            "s3_secret_key": target.secret_access_key,
            "s3_public_base_url": target.public_base_url,
        }
        inputs.update({key: value for key, value in values.items() if value})
    return inputs


def publishing_inputs(publishing: dict[str, Any] | None, default_hf_token: str | None) -> dict[str, Any]:
    """Return the trainer inputs for where the model goes, from settings stored before publishing
    was checked and sealed (no ``destination`` key); newer jobs are delivered by ``request.delivery``.

    Hub: ``hub_model_id`` (and ``hf_token``: the publishing settings' own, else
    ``default_hf_token``) unless ``push_to_hub`` is false. S3: the ``s3_*`` keys that are set.
    Other keys of ``publishing`` are not trainer inputs and are not sent.
    """
    if not publishing or "destination" in publishing:
        return {}
    inputs: dict[str, Any] = {}
    hub_model_id = publishing.get("hub_model_id")
    if isinstance(hub_model_id, str) and hub_model_id.strip() and publishing.get("push_to_hub", True) is not False:
        inputs["hub_model_id"] = hub_model_id.strip()
        token = publishing.get("hf_token")
        token = token if isinstance(token, str) and token.strip() else default_hf_token
        if token:
            inputs["hf_token"] = token.strip()
    for key in S3_PUBLISHING_KEYS:
        value = publishing.get(key)
        if isinstance(value, str) and value.strip():
            inputs[key] = value.strip()
    return inputs


def build_input(request: RunRequest, *, images_url: str | None, default_hf_token: str | None = None) -> dict[str, Any]:
    """Return the prediction ``input`` for ``request``: only keys of :data:`TRAINER_INPUTS`."""
    run_input: dict[str, Any] = {
        "config_json": config_text(request),
        "dataloader_json": dataloader_text(request),
    }
    if images_url:
        run_input["images"] = images_url
    if request.delivery is not None:
        run_input.update(delivery_inputs(request.delivery))
    else:
        run_input.update(publishing_inputs(request.publishing, default_hf_token))
    unknown = set(run_input) - TRAINER_INPUTS
    if unknown:  # pragma: no cover - a programming error, caught by the unit tests
        raise AssertionError(f"not trainer inputs: {sorted(unknown)}")
    return run_input


def build_body(
    request: RunRequest, *, version_ref: str, images_url: str | None, default_hf_token: str | None = None
) -> dict[str, Any]:
    """Return the ``POST /v1/predictions`` body: ``version``, ``input`` and, with a webhook URL,
    ``webhook`` and ``webhook_events_filter``."""
    body: dict[str, Any] = {
        "version": version_ref,
        "input": build_input(request, images_url=images_url, default_hf_token=default_hf_token),
    }
    if request.webhook_url:
        body["webhook"] = request.webhook_url
        body["webhook_events_filter"] = list(WEBHOOK_EVENTS)
    return body
