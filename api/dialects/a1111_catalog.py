"""AUTOMATIC1111's read-only routes (checkpoints, VAEs, samplers, schedulers, upscalers, LoRAs and the ones clients
probe at start) and its options, per user. Each answers what Atelier really has: empty lists where it has none
(scripts, embeddings, extensions), so that a client never offers what cannot run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request

from api.dialects.a1111_requests import model_name, vae_name
from api.dialects.common import DialectContext, invalid, run_sync
from contracts import IMAGE_UPSCALERS, LATENT_UPSCALERS, SAMPLERS

SCHEDULERS = [{"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1.0,
               "need_inner_model": False},
              {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0, "need_inner_model": False}]


def add_routes(app: FastAPI, ctx: DialectContext) -> None:
    """The listings, bound to the server's catalog."""

    def who(request: Request) -> str:
        return ctx.user(request, realm="Atelier /sdapi/v1")

    me = Depends(who)
    services = ctx.services
    cat = services.catalog

    @app.get("/sd-models", summary="Checkpoints")
    async def sd_models(user: str = me) -> list[dict[str, Any]]:
        """The server's default checkpoint first, then the checkpoints of the models folder (title, model_name, hash,
        sha256, filename); a title is what sd_model_checkpoint takes."""
        return await run_sync(checkpoints, ctx)

    @app.get("/sd-vae", summary="VAEs")
    async def sd_vae(user: str = me) -> list[dict[str, Any]]:
        """The VAEs of the vae folder; sd_vae takes their names, or "Automatic" for the checkpoint's own."""
        return [{"model_name": name, "filename": shown(ctx, services.settings.vae_dir / name)} for name in cat.vaes()]

    @app.get("/samplers", summary="Samplers")
    async def samplers(user: str = me) -> list[dict[str, Any]]:
        """The samplers, by A1111's names."""
        return [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS]

    @app.get("/schedulers", summary="Schedulers")
    async def schedulers(user: str = me) -> list[dict[str, Any]]:
        """automatic (the sampler's own) and karras (with DPM++ 2M)."""
        return SCHEDULERS

    @app.get("/upscalers", summary="Hires fix upscalers")
    async def upscalers(user: str = me) -> list[dict[str, Any]]:
        """The built-in image upscalers and the upscaler models of the upscalers folder (hr_upscaler takes them)."""
        return [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4.0}
                for name in [*IMAGE_UPSCALERS, *cat.upscalers()]]

    @app.get("/latent-upscale-modes", summary="Latent upscale modes")
    async def latent_modes(user: str = me) -> list[dict[str, Any]]:
        """The latent upscalers hr_upscaler takes."""
        return [{"name": name} for name in LATENT_UPSCALERS]

    @app.get("/loras", summary="LoRAs")
    async def loras(user: str = me) -> list[dict[str, Any]]:
        """The LoRA files, by the names <lora:name:weight> takes."""
        return [{"name": name, "alias": name, "path": None, "metadata": {}} for name in cat.loras()]

    @app.post("/refresh-checkpoints", summary="Read the models folder again")
    async def refresh_checkpoints(user: str = me) -> None:
        """Atelier reads its folders on every request, so there is nothing to refresh."""

    @app.post("/refresh-loras", summary="Read the LoRA folder again")
    async def refresh_loras(user: str = me) -> None:
        """Atelier reads its folders on every request, so there is nothing to refresh."""

    add_probes(app, ctx, me)


def add_probes(app: FastAPI, ctx: DialectContext, me: Any) -> None:
    """The read-only routes clients ask at start, answered honestly: what Atelier does not have is empty."""
    settings = ctx.settings

    @app.get("/scripts", summary="Scripts")
    async def scripts(user: str = me) -> dict[str, list[str]]:
        """Atelier runs no scripts."""
        return {"txt2img": [], "img2img": []}

    @app.get("/script-info", summary="Scripts")
    async def script_info(user: str = me) -> list[Any]:
        """Atelier runs no scripts."""
        return []

    @app.get("/embeddings", summary="Textual inversion embeddings")
    async def embeddings(user: str = me) -> dict[str, Any]:
        """Atelier loads no embeddings."""
        return {"loaded": {}, "skipped": {}}

    @app.get("/extensions", summary="Extensions")
    async def extensions(user: str = me) -> list[Any]:
        """Atelier has no extensions."""
        return []

    for path, what in (("/face-restorers", "face restorers"), ("/realesrgan-models", "RealESRGAN models"),
                       ("/prompt-styles", "prompt styles"), ("/hypernetworks", "hypernetworks")):
        app.add_api_route(path, _empty(what), methods=["GET"], summary=what.capitalize(),
                          dependencies=[me])

    @app.get("/memory", summary="Memory")
    async def memory(user: str = me) -> dict[str, Any]:
        """The machine's RAM and the GPU memory torch holds (or why there is none)."""
        return await run_sync(ctx.services.memory)

    @app.get("/cmd-flags", summary="Server flags")
    async def cmd_flags(user: str = me) -> dict[str, Any]:
        """A1111's flags that have a meaning here, with Atelier's values."""
        return {"api": True, "nowebui": False, "api_auth": bool(ctx.accounts_required), "listen":
                settings.host not in ("127.0.0.1", "localhost", "::1"), "port": settings.port,
                "share": settings.share, "medvram": settings.memory_mode == "model-offload",
                "lowvram": settings.memory_mode == "sequential-offload"}


def _empty(what: str) -> Any:
    async def none() -> list[Any]:
        return []

    none.__doc__ = f"Atelier has no {what}."
    return none


def shown(ctx: DialectContext, path: Path) -> str:
    """A file as the API names it: under the data dir as <data>/…, never the server's absolute path (as messages)."""
    try:
        return f"<data>/{path.absolute().relative_to(ctx.settings.data_path).as_posix()}"
    except ValueError:
        return path.name


def default_title(ctx: DialectContext) -> str:
    """The server's default checkpoint as /sd-models titles it (and sd_model_checkpoint names it)."""
    return ctx.services.default_models["image"]


def checkpoints(ctx: DialectContext) -> list[dict[str, Any]]:
    """sd-models: the default first, then the models folder's checkpoints not the same files as the default."""
    cat = ctx.services.catalog
    source = ctx.services.default_models["image_source"]
    rows = [{"title": default_title(ctx), "model_name": default_title(ctx), "hash": None, "sha256": None,
             "filename": shown(ctx, Path(source)) if Path(source).exists() else source, "config": None}]
    for name in cat.models():
        path = cat.model_path(name)
        if path is None or path.absolute() == Path(source).absolute():  # the default's own folder
            continue
        short = cat.model_hash(name)
        rows.append({"title": f"{name} [{short}]" if short else name, "model_name": Path(name).stem,
                     "hash": short or None, "sha256": cat.model_sha256(name) or None, "filename": shown(ctx, path),
                     "config": None})
    return rows


def title_of(ctx: DialectContext, name: str) -> str:
    """The /sd-models title of a checkpoint name ("" = the default)."""
    if not name:
        return default_title(ctx)
    short = ctx.services.catalog.model_hash(name)
    return f"{name} [{short}]" if short else name


def options_of(ctx: DialectContext, user: str) -> dict[str, Any]:
    """GET /options: the caller's checkpoint and VAE, and what Atelier's other settings are in A1111's names."""
    saved = ctx.services.preferences.get(user)
    model = saved.get("sd_model_checkpoint", "")
    settings = ctx.settings
    return {
        "sd_model_checkpoint": title_of(ctx, model), "sd_checkpoint_hash": ctx.services.catalog.model_sha256(model)
        if model else None, "sd_vae": saved.get("sd_vae") or "Automatic", "CLIP_stop_at_last_layers": 1,
        "samples_format": "png", "samples_save": True, "live_previews_enable": True,
        "show_progress_every_n_steps": settings.preview_every, "live_previews_image_format": "png",
        "sd_checkpoints_limit": 1, "eta_noise_seed_delta": 0, "outdir_samples": "",
    }


def save_options(ctx: DialectContext, user: str, options: dict[str, Any]) -> None:
    """POST /options: check and save the caller's checkpoint and VAE (a 422 naming an unknown one)."""
    values = {"sd_model_checkpoint": model_name(options["sd_model_checkpoint"], default_title(ctx))} \
        if "sd_model_checkpoint" in options else {}
    if "sd_vae" in options:
        values["sd_vae"] = vae_name(options["sd_vae"])
    errors = {k: f"{k} must be a name (text), got {v!r}." for k, v in values.items() if not isinstance(v, str)}
    if not errors and not ctx.services.images.remote_names:
        found = ctx.services.catalog.field_errors(model=values.get("sd_model_checkpoint", ""),
                                                  vae=values.get("sd_vae", ""))
        errors = {{"model": "sd_model_checkpoint", "vae": "sd_vae"}[k]: v for k, v in found.items()}
    if errors:
        raise invalid(errors, status=422)
    ctx.services.preferences.set(user, values)
