import { describe, expect, it } from "vitest";
import { catalogFrom, choicesFrom, defaultsFrom, ENDPOINT_KEYS, fieldsInUse, imageCall, named, NO_CHOICES, offered, noteTouched, settingsFromPngInfo, upscalerChoices, withServerDefaults } from "./api";
import { DEFAULT_IMAGE_SETTINGS, type ImageSettings } from "./types";

const settings: ImageSettings = { ...DEFAULT_IMAGE_SETTINGS, prompt: "a fox", width: 64, height: 64, steps: 4 };
const init = new Blob(["init"], { type: "image/png" });
const mask = new Blob(["mask"], { type: "image/png" });

describe("image calls", () => {
  it("txt2img goes to /generate_image with the txt2img, model and hires parameters only", () => {
    const call = imageCall("txt2img", { ...settings, enable_hr: true, hr_scale: 1.5, model: "my.safetensors" }, { initImage: init, mask });
    expect(call).toMatchObject({ endpoint: "/generate_image" });
    if ("error" in call) throw new Error("unexpected");
    expect(Object.keys(call.payload).sort()).toEqual(
      [
        "prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "seed", "sampler", "batch_count", "model", "vae",
        "enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength", "refiner_checkpoint", "refiner_switch_at",
      ].sort(),
    );
    expect(call.payload).toMatchObject({ prompt: "a fox", enable_hr: true, hr_scale: 1.5, hr_upscaler: "Latent", model: "my.safetensors", vae: "" });
  });

  it("img2img goes to /img2img with the init image, denoising strength and resize mode, and no hires or mask", () => {
    const call = imageCall("img2img", { ...settings, denoising_strength: 0.4, resize_mode: 2 }, { initImage: init, mask });
    if ("error" in call) throw new Error("unexpected");
    expect(call.endpoint).toBe("/img2img");
    expect(call.payload).toMatchObject({ init_image: init, denoising_strength: 0.4, resize_mode: 2 });
    for (const key of ["mask", "enable_hr", "hr_scale", "mask_blur"]) expect(call.payload).not.toHaveProperty(key);
  });

  it("sends the refiner in txt2img and img2img, and never to /inpaint (which has no such parameters)", () => {
    const chosen = { ...settings, refiner_checkpoint: "xl.safetensors", refiner_switch_at: 0.6 };
    for (const mode of ["txt2img", "img2img"] as const) {
      const call = imageCall(mode, chosen, { initImage: init, mask });
      if ("error" in call) throw new Error("unexpected");
      expect(call.payload).toMatchObject({ refiner_checkpoint: "xl.safetensors", refiner_switch_at: 0.6 });
    }
    const call = imageCall("inpaint", chosen, { initImage: init, mask });
    if ("error" in call) throw new Error("unexpected");
    for (const key of ["refiner_checkpoint", "refiner_switch_at"]) expect(call.payload).not.toHaveProperty(key);
  });

  it("inpaint goes to /inpaint with the mask and every inpaint parameter in A1111's names", () => {
    const chosen = { ...settings, mask_blur: 8, inpainting_fill: 2, inpaint_full_res: true, inpaint_full_res_padding: 48, inpainting_mask_invert: 1 };
    const call = imageCall("inpaint", chosen, { initImage: init, mask });
    if ("error" in call) throw new Error("unexpected");
    expect(call.endpoint).toBe("/inpaint");
    expect(call.payload).toMatchObject({
      init_image: init,
      mask,
      mask_blur: 8,
      inpainting_fill: 2,
      inpaint_full_res: true,
      inpaint_full_res_padding: 48,
      inpainting_mask_invert: 1,
      denoising_strength: 0.75,
      resize_mode: 0,
    });
    expect(Object.keys(call.payload).sort()).toEqual([...ENDPOINT_KEYS.inpaint, "init_image", "mask"].sort());
  });

  it("refuses before sending when an image the mode needs is missing, with the field's message", () => {
    const noInit = imageCall("img2img", settings, { initImage: null, mask: null });
    expect(noInit).toMatchObject({ error: { kind: "validation", fields: { init_image: expect.stringContaining("init image") } } });
    const noMask = imageCall("inpaint", settings, { initImage: init, mask: null });
    expect(noMask).toMatchObject({ error: { kind: "validation", fields: { mask: expect.stringContaining("Draw a mask") } } });
    expect("error" in imageCall("txt2img", settings, { initImage: null, mask: null })).toBe(false);
  });
});

describe("/models, /choices and PNG Info", () => {
  it("reads /models, missing lists as empty, and offers the server's upscalers in its order", () => {
    const catalog = catalogFrom({ models: ["a.safetensors", 3], upscalers: ["4x-UltraSharp", "Lanczos"] });
    expect(catalog).toEqual({ models: ["a.safetensors"], vaes: [], upscalers: ["4x-UltraSharp", "Lanczos"] });
    expect(catalogFrom(null)).toEqual({ models: [], vaes: [], upscalers: [] });
    const choices = choicesFrom({ upscalers: ["Latent", "Lanczos"] });
    expect(upscalerChoices(choices, catalog)).toEqual(["Latent", "Lanczos", "4x-UltraSharp"]);
    expect(upscalerChoices(NO_CHOICES, catalog)).toEqual(["4x-UltraSharp", "Lanczos"]);
  });

  it("reads /choices, the one source of the choice lists, and drops what is malformed", () => {
    const choices = choicesFrom({
      samplers: ["Euler a", "DPM++ 2M", 7],
      resize_modes: [{ value: 0, label: "Just resize" }, { value: "1", label: "Crop and resize" }, null],
      inpainting_fills: [{ value: 1, label: "original" }],
      mask_modes: "Inpaint masked",
      upscalers: ["Latent"],
    });
    expect(choices).toEqual({
      samplers: ["Euler a", "DPM++ 2M"],
      resize_modes: [{ value: 0, label: "Just resize" }],
      inpainting_fills: [{ value: 1, label: "original" }],
      mask_modes: [],
      upscalers: ["Latent"],
    });
    expect(choicesFrom(undefined)).toEqual(NO_CHOICES);
  });

  it("offers the current value when the server's list lacks it, so the field shows what is sent", () => {
    expect(offered(named(["Euler a", "DDIM"]), "DDIM")).toEqual(named(["Euler a", "DDIM"]));
    expect(offered(named([]), "Euler a")).toEqual([{ value: "Euler a", label: "Euler a" }]);
    expect(offered([{ value: 0, label: "Just resize" }], 2)).toEqual([{ value: 0, label: "Just resize" }, { value: 2, label: "2" }]);
  });

  it("maps PNG Info's A1111 names onto the screen's settings", () => {
    const info = {
      prompt: "a castle",
      negative_prompt: "fog",
      steps: 30,
      sampler_name: "DPM++ 2M Karras",
      cfg_scale: "6.5",
      seed: 1234,
      width: 512,
      height: 768,
      denoising_strength: 0.45,
      hr_scale: 2,
      hr_upscaler: "Lanczos",
      hr_second_pass_steps: 10,
      mask_blur: 6,
      model: "known",
      inpainting_fill: 2,
      inpaint_full_res: true,
      inpaint_full_res_padding: 48,
      inpainting_mask_invert: 1,
      mode: "inpaint",
      extra: { Version: "v1.10.1" },
      parameters: "a castle\nNegative prompt: fog\nSteps: 30, ...",
    };
    const catalog = { models: ["known.safetensors"], vaes: [], upscalers: [] };
    expect(settingsFromPngInfo(info, catalog)).toEqual({
      prompt: "a castle",
      negative_prompt: "fog",
      steps: 30,
      sampler: "DPM++ 2M Karras",
      cfg_scale: 6.5,
      seed: 1234,
      width: 512,
      height: 768,
      denoising_strength: 0.45,
      enable_hr: true,
      hr_scale: 2,
      hr_upscaler: "Lanczos",
      hr_second_pass_steps: 10,
      mask_blur: 6,
      inpainting_fill: 2,
      inpaint_full_res: true,
      inpaint_full_res_padding: 48,
      inpainting_mask_invert: 1,
      model: "known.safetensors",
      refiner_checkpoint: "",
      refiner_switch_at: 0.8,
    });
  });

  it("leaves out a model the server does not have, and turns hires fix off for a PNG without it", () => {
    const out = settingsFromPngInfo({ prompt: "p", steps: "x", model: "elsewhere.ckpt", vae: "v.pt" }, { models: [], vaes: ["v.pt"], upscalers: [] });
    expect(out).toEqual({ prompt: "p", enable_hr: false, vae: "v.pt", refiner_checkpoint: "", refiner_switch_at: 0.8 });
    // PNG Info's own verdict on hires fix wins over a leftover field.
    expect(settingsFromPngInfo({ enable_hr: false, hr_scale: 2 })).toMatchObject({ enable_hr: false, hr_scale: 2 });
  });
});

describe("the server's defaults", () => {
  it("are read from /choices, those of known type only", () => {
    const answer = { samplers: [], defaults: { width: 256, height: 256, steps: 8, cfg_scale: 7, sampler: "Euler a", seed: "x", extra: 1 } };
    expect(defaultsFrom(answer)).toEqual({ width: 256, height: 256, steps: 8, cfg_scale: 7, sampler: "Euler a" });
    expect(defaultsFrom({ defaults: { width: "256", steps: Number.NaN } })).toEqual({});
    expect(defaultsFrom(undefined)).toEqual({});
  });

  it("fill the fields still at the client's own defaults, not those the user set", () => {
    const set = { ...DEFAULT_IMAGE_SETTINGS, steps: 30 };
    const out = withServerDefaults(set, { width: 256, height: 256, steps: 8, cfg_scale: 7, sampler: "Euler a" });
    expect([out.width, out.height, out.steps, out.cfg_scale, out.sampler]).toEqual([256, 256, 30, 7, "Euler a"]);
  });

  it("leave a field the user set, even to the client's own default, before they came", () => {
    const touched = new Set<keyof ImageSettings>();
    const reused = noteTouched(touched, DEFAULT_IMAGE_SETTINGS, { ...DEFAULT_IMAGE_SETTINGS, steps: 30 });
    const back = noteTouched(touched, reused, { ...reused, steps: DEFAULT_IMAGE_SETTINGS.steps });
    const out = withServerDefaults(back, { width: 256, steps: 8 }, touched);
    expect([out.width, out.steps]).toEqual([256, DEFAULT_IMAGE_SETTINGS.steps]);
  });

  it("leave the field the user is in, still at the client's default (selected, about to be typed over)", () => {
    const out = withServerDefaults(DEFAULT_IMAGE_SETTINGS, { width: 256, height: 256 }, fieldsInUse(new Set(), "width"));
    expect([out.width, out.height]).toEqual([DEFAULT_IMAGE_SETTINGS.width, 256]);
    // Focus outside the form (another screen's field, or nothing) leaves the fields to the defaults.
    expect(fieldsInUse(new Set(), "chat-input")).toEqual(new Set());
    expect(fieldsInUse(new Set(), undefined)).toEqual(new Set());
  });
});
