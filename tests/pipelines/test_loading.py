"""A model that cannot load is explained in Atelier's words: what is missing, the one command that fetches it, and
how to try Atelier without it."""

from __future__ import annotations

from pipelines.loading import TEXT_MODEL, explain_load_error

# What diffusers raises for a hub model that is not cached while the hub is out of reach.
DIFFUSERS_OFFLINE = OSError(
    "Cannot load model stabilityai/sd-turbo: the model is not fully cached locally (Cannot find an appropriate "
    "cached snapshot folder for the specified revision on the local disk and outgoing traffic has been disabled. "
    "To enable repo look-ups and downloads online, pass 'local_files_only=False' as input.) and an error occurred "
    "while trying to fetch metadata from the Hub. Please check out the root cause in the stacktrace above.")


def test_an_uncached_hub_model_offline_is_explained_without_the_loaders_advice() -> None:
    said = explain_load_error("stabilityai/sd-turbo", DIFFUSERS_OFFLINE)
    assert said == ("The image model stabilityai/sd-turbo is not on this machine, and it could not be downloaded. "
                    "To fetch it, run once with internet access: hf download stabilityai/sd-turbo (or pass a folder "
                    "that holds it with --image-model). To try Atelier without it: python app.py --profile tiny.")
    for advice in ("local_files_only", "stacktrace", "HF_HUB_OFFLINE"):
        assert advice not in said


def test_another_download_failure_keeps_its_cause_in_short() -> None:
    said = explain_load_error("org/gated-model", PermissionError("401 Client Error: this repo is gated\nmore"),
                              TEXT_MODEL)
    assert "(PermissionError: 401 Client Error: this repo is gated)" in said
    assert "hf download org/gated-model" in said
    assert "--text-model" in said
    assert "--profile tiny" in said
