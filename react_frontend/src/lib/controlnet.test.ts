import { describe, expect, it } from "vitest";
import { imageCall } from "./api";
import {
  controlCatalogFrom,
  enabledUnits,
  firstUnits,
  modelsFor,
  newUnit,
  pictureSha,
  recordedUnits,
  reusedUnits,
  splitUnitErrors,
  unitFromRecord,
  unitPayload,
  withModule,
  type ControlPicture,
} from "./controlnet";
import { errorFromMessage, errorFromStatus } from "./errors";
import { DEFAULT_IMAGE_SETTINGS } from "./types";

// /models as the tiny profile answers it (ui/api_endpoints.py register_catalog), a few modules kept.
const MODELS_ANSWER = {
  models: ["tiny-sd"],
  controlnets: ["tiny-cn-sd15 [1a2b3c4d]", "tiny-cn-sdxl [5e6f7a8b]"],
  module_list: ["none", "tile_resample", "canny", "invert"],
  module_detail: {
    none: { model_free: true, sliders: [{ name: "Resolution", value: 512, min: 64, max: 2048, step: 8 }] },
    tile_resample: {
      model_free: true,
      sliders: [
        { name: "Resolution", value: 512, min: 64, max: 2048, step: 8 },
        { name: "Down Sampling Rate", value: 1.0, min: 1.0, max: 8.0, step: 0.01 },
      ],
    },
    canny: {
      model_free: true,
      sliders: [
        { name: "Resolution", value: 512, min: 64, max: 2048, step: 8 },
        { name: "Low Threshold", value: 100, min: 1, max: 255, step: 1 },
        { name: "High Threshold", value: 200, min: 1, max: 255, step: 1 },
      ],
    },
    invert: { model_free: true, sliders: [] },
  },
  families: {
    models: { "tiny-sd": "sd15", "tiny-sdxl": "sdxl", "old.ckpt": null },
    controlnets: { "tiny-cn-sd15 [1a2b3c4d]": "sd15", "tiny-cn-sdxl [5e6f7a8b]": "sdxl" },
    default: "sd15",
  },
};
const catalog = controlCatalogFrom(MODELS_ANSWER);
const SHA = "ab".repeat(32);

describe("the ControlNet lists", () => {
  it("reads the models, the modules and which sliders each module shows", () => {
    expect(catalog.models).toEqual(["tiny-cn-sd15 [1a2b3c4d]", "tiny-cn-sdxl [5e6f7a8b]"]);
    expect(catalog.modules).toEqual(["none", "tile_resample", "canny", "invert"]);
    expect(catalog.sliders.canny.resolution?.value).toBe(512);
    expect(catalog.sliders.canny.threshold_a).toMatchObject({ name: "Low Threshold", value: 100, min: 1, max: 255 });
    expect(catalog.sliders.canny.threshold_b).toMatchObject({ name: "High Threshold", value: 200 });
    expect(catalog.sliders.tile_resample).toMatchObject({ threshold_a: { name: "Down Sampling Rate" }, threshold_b: null });
    expect(catalog.sliders.invert).toEqual({ resolution: null, threshold_a: null, threshold_b: null });
  });

  it("takes a server without ControlNet lists (or a malformed answer) as offering none", () => {
    const none = { models: [], modules: [], sliders: {}, families: { models: {}, controlnets: {}, default: null } };
    expect(controlCatalogFrom({ models: ["tiny-sd"] })).toEqual(none);
    expect(controlCatalogFrom(null)).toEqual(none);
    const odd = controlCatalogFrom({ module_list: ["canny", 3], module_detail: { canny: { sliders: [{ name: "x" }] } } });
    expect(odd.modules).toEqual(["canny"]);
    expect(odd.sliders.canny).toEqual({ resolution: null, threshold_a: null, threshold_b: null });
  });
});

describe("the ControlNets offered for a checkpoint", () => {
  it("are those of its family, the default checkpoint's when none is chosen", () => {
    expect(modelsFor(catalog, "")).toEqual(["tiny-cn-sd15 [1a2b3c4d]"]);
    expect(modelsFor(catalog, "tiny-sdxl")).toEqual(["tiny-cn-sdxl [5e6f7a8b]"]);
  });

  it("are all of them while the server cannot tell the checkpoint's family (or a ControlNet's)", () => {
    expect(modelsFor(catalog, "old.ckpt")).toEqual(catalog.models);
    expect(modelsFor(controlCatalogFrom({ ...MODELS_ANSWER, families: undefined }), "tiny-sd")).toEqual(catalog.models);
    const unknownCn = controlCatalogFrom({ ...MODELS_ANSWER, families: { ...MODELS_ANSWER.families, controlnets: {} } });
    expect(modelsFor(unknownCn, "tiny-sdxl")).toEqual(catalog.models);
  });
});

describe("a unit as a job sends it", () => {
  it("starts with two units, off, as sd-webui-controlnet's panel", () => {
    const units = firstUnits();
    expect(units).toHaveLength(2);
    expect(units.every((u) => !u.enabled && u.module === "none" && u.weight === 1 && u.guidance_end === 1)).toBe(true);
    expect(new Set(units.map((u) => u.key)).size).toBe(2);
  });

  it("a module's thresholds start at its defaults, and a module without them sends -1", () => {
    const canny = withModule(newUnit({ model: "tiny-cn-sd15 [1a2b3c4d]" }), "canny", catalog);
    expect(canny).toMatchObject({ module: "canny", processor_res: 512, threshold_a: 100, threshold_b: 200 });
    expect(unitPayload({ ...canny, threshold_a: 50, weight: 0.6, guidance_start: 0.1, guidance_end: 0.9 }, catalog, "QUJD")).toEqual({
      enabled: true,
      module: "canny",
      model: "tiny-cn-sd15 [1a2b3c4d]",
      weight: 0.6,
      guidance_start: 0.1,
      guidance_end: 0.9,
      control_mode: "Balanced",
      resize_mode: "Crop and Resize",
      pixel_perfect: false,
      processor_res: 512,
      threshold_a: 50,
      threshold_b: 200,
      image: "QUJD",
    });
    const invert = unitPayload(withModule({ ...canny, threshold_a: 50 }, "invert", catalog), catalog, null);
    expect(invert).toMatchObject({ processor_res: -1, threshold_a: -1, threshold_b: -1 });
    // No picture: img2img's and inpaint's own is used, so the key is left out.
    expect(invert).not.toHaveProperty("image");
    // Pixel perfect: the server sets the resolution from the size.
    expect(unitPayload({ ...canny, pixel_perfect: true }, catalog, null)).toMatchObject({ pixel_perfect: true, processor_res: -1, threshold_a: 100 });
  });

  it("sends the enabled units only, each remembered by its place in the form", () => {
    const units = [newUnit(), newUnit({ enabled: true, module: "canny" }), newUnit({ enabled: true })];
    expect(enabledUnits(units).map(({ index, unit }) => [index, unit.module])).toEqual([
      [1, "canny"],
      [2, "none"],
    ]);
  });

  it("goes with the job as the `controlnet` parameter, in every mode, and not at all without units", () => {
    const settings = { ...DEFAULT_IMAGE_SETTINGS, prompt: "a fox" };
    const units = [unitPayload(withModule(newUnit({ enabled: true }), "canny", catalog), catalog, "QUJD")];
    const init = new Blob(["init"], { type: "image/png" });
    for (const mode of ["txt2img", "img2img", "inpaint"] as const) {
      const call = imageCall(mode, settings, { initImage: init, mask: init, controlnet: units });
      if ("error" in call) throw new Error("unexpected");
      expect(call.payload.controlnet).toEqual(units);
    }
    const plain = imageCall("txt2img", settings, { initImage: null, mask: null, controlnet: [] });
    if ("error" in plain) throw new Error("unexpected");
    expect(plain.payload).not.toHaveProperty("controlnet");
  });
});

describe("the server's messages about units", () => {
  it("a job's refusal, folded into its first field, goes on the unit's field, numbered as the form numbers it", () => {
    // Form unit 0 was off: the job's unit 0 is the form's unit 1 (ui/image_form.py check_request folds these).
    const error = errorFromStatus({
      message: [
        { is_valid: false, parameter_name: "prompt", message: "ControlNet unit 0: guidance_start (0.8) must not be after guidance_end (0.2) ControlNet unit 1: weight must be between 0 and 2, got 3" },
        { is_valid: true, parameter_name: "width", message: "" },
      ],
    });
    const split = splitUnitErrors(error, [1, 3]);
    expect(split.units).toEqual({
      1: { guidance_start: "guidance_start (0.8) must not be after guidance_end (0.2)" },
      3: { weight: "weight must be between 0 and 2, got 3" },
    });
    // Nothing is left under the prompt; the alert says which units, in the form's numbers.
    expect(split.error.fields).toEqual({});
    expect(split.error.message).toContain("ControlNet unit 1: guidance_start");
    expect(split.error.message).toContain("ControlNet unit 3: weight");
  });

  it("keeps the other fields' own messages where they were", () => {
    const error = errorFromStatus({
      message: [{ is_valid: false, parameter_name: "prompt", message: "prompt is too long. ControlNet unit 0: unknown ControlNet model 'x'; available: a [1]" }],
    });
    const split = splitUnitErrors(error, [0]);
    expect(split.error.fields).toEqual({ prompt: "prompt is too long." });
    expect(split.units[0]).toEqual({ model: "unknown ControlNet model 'x'; available: a [1]" });
  });

  it("reads each kind of message onto its field: picture, module, model family, thresholds", () => {
    const cases: [string, string][] = [
      ["controlnet.0.image: the image must be base64 (or a data: URL), got 'xx'.", "image"],
      ["ControlNet unit 0: image is required in txt2img (img2img and inpaint use their picture when a unit has none).", "image"],
      ["ControlNet unit 0: unknown ControlNet module 'nope'; known: none, canny", "module"],
      ["ControlNet unit 0: the annotator file 'ControlNetHED.pth' is missing: put it at /data/annotators/hed", "module"],
      ["ControlNet unit 0: 'tiny-cn-sdxl [5e6f]' is a ControlNet for SDXL; the checkpoint is SD 1.5: choose a ControlNet made for SD 1.5", "model"],
      ["ControlNet unit 0: choose a ControlNet model for this unit; available: none", "model"],
      ["ControlNet unit 0: threshold_a must be between 1 and 255 for this module (Low Threshold), or -1 for its default 100; got 999.0", "threshold_a"],
    ];
    for (const [text, field] of cases) {
      // A preview's refusal is a gr.Error: its text alone, about the one unit previewed (named unit 0).
      const split = splitUnitErrors(errorFromMessage(text), [2]);
      expect(Object.keys(split.units[2] ?? {}), text).toEqual([field]);
    }
  });

  it("leaves a message about no unit alone", () => {
    const error = errorFromMessage("Too many image jobs: the limit is 2 per minute. Try again in 30 s.");
    expect(splitUnitErrors(error, [0])).toEqual({ error, units: {} });
  });
});

describe("a job's recorded units back in the form", () => {
  const picture: ControlPicture = { file: new Blob(["png"]), name: "control-0.png", url: "blob:x", width: 64, height: 64 };
  // A history entry's unit (services/images.py keeps the checked unit and its picture's inputs/ path).
  const history = {
    module: "canny", model: "tiny-cn-sd15 [1a2b3c4d]", weight: 0.5, guidance_start: 0.1, guidance_end: 0.7,
    control_mode: "My prompt is more important", resize_mode: "Just Resize", pixel_perfect: false,
    processor_res: 512, threshold_a: 60, threshold_b: 180, enabled: true, image: `inputs/${SHA}.png`,
  };

  it("reads a history entry's unit, its picture by its sha", () => {
    expect(pictureSha(history)).toBe(SHA);
    expect(pictureSha({ image: "" })).toBeNull();
    expect(pictureSha({ image: "../etc/passwd" })).toBeNull();
    expect(pictureSha({ image: "inputs/../../secret.png" })).toBeNull();
    expect(unitFromRecord(history, catalog.models)).toMatchObject({
      enabled: true, module: "canny", model: "tiny-cn-sd15 [1a2b3c4d]", weight: 0.5, guidance_start: 0.1, guidance_end: 0.7,
      control_mode: "My prompt is more important", resize_mode: "Just Resize", processor_res: 512, threshold_a: 60, threshold_b: 180,
    });
  });

  it("reads PNG Info's unit (from `ControlNet 0: \"…\"`), naming the model as this server lists it", () => {
    const png = { module: "canny", model: "tiny-cn-sd15", weight: "1.5", pixel_perfect: "True", guidance_end: 1 };
    expect(unitFromRecord(png, catalog.models)).toMatchObject({ model: "tiny-cn-sd15 [1a2b3c4d]", weight: 1.5, pixel_perfect: true });
    expect(unitFromRecord({ model: "None" }, catalog.models).model).toBe("");
  });

  it("puts the recorded units first with their pictures, and turns the form's others off", () => {
    const current = [newUnit({ enabled: true, module: "invert" }), newUnit({ enabled: true, module: "none" }), newUnit({ enabled: true })];
    const units = reusedUnits(current, [history], catalog.models, [picture]);
    expect(units).toHaveLength(3);
    expect(units[0]).toMatchObject({ enabled: true, module: "canny", image: picture });
    expect(units.slice(1).map((u) => [u.enabled, u.module])).toEqual([
      [false, "none"],
      [false, "none"],
    ]);
    // A job without units turns every unit off (the same picture again), leaving at least two.
    expect(reusedUnits([newUnit({ enabled: true })], [], []).map((u) => u.enabled)).toEqual([false, false]);
  });

  it("a record that says nothing about units is not read as one", () => {
    expect(recordedUnits(undefined)).toBeNull();
    expect(recordedUnits("x")).toBeNull();
    expect(recordedUnits([history, null, 3])).toEqual([history]);
  });
});
