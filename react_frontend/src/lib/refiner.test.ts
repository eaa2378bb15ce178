import { describe, expect, it } from "vitest";
import { catalogFrom, catalogUnsettled, settingsFromPngInfo } from "./api";
import { familyOf, listedRefiner, refinerApplies, refinerChoices, refinerFromRecord } from "./refiner";

const catalog = catalogFrom({
  models: ["base.safetensors", "tiny-sdxl", "xl-refiner.safetensors", "mystery.ckpt"],
  families: { models: { "base.safetensors": "sd15", "tiny-sdxl": "sdxl", "xl-refiner.safetensors": "sdxl", "mystery.ckpt": null }, default: "sd15" },
});

describe("the refiner picker", () => {
  it("reads each checkpoint's family and the default's from /models", () => {
    expect(familyOf(catalog, "tiny-sdxl")).toBe("sdxl");
    expect(familyOf(catalog, "")).toBe("sd15");
    expect(familyOf(catalog, "mystery.ckpt")).toBeNull();
    expect(familyOf(catalogFrom({ models: ["a"] }), "a")).toBeNull(); // a server without families
  });

  it("is read again after a job while the first job may still build the checkpoints or tell the default's family", () => {
    expect(catalogUnsettled(catalog)).toBe(false);
    expect(catalogUnsettled(catalogFrom({ models: [] }))).toBe(true);
    expect(catalogUnsettled(catalogFrom({ models: ["tiny-sd"], families: { models: { "tiny-sd": null }, default: null } }))).toBe(true);
    expect(catalogUnsettled(catalogFrom({ models: ["a.ckpt"] }))).toBe(false); // no families: nothing more to learn
  });

  it("offers None and the SDXL checkpoints (and those not known yet), never an SD 1.5 one", () => {
    expect(refinerChoices(catalog, "").map((o) => o.value)).toEqual(["", "tiny-sdxl", "xl-refiner.safetensors", "mystery.ckpt"]);
    expect(refinerChoices(catalog, "")[0]).toEqual({ value: "", label: "None" });
  });

  it("keeps showing a value the list lacks (a record's refiner this server has no family for)", () => {
    expect(refinerChoices(catalog, "base.safetensors").map((o) => o.value)).toContain("base.safetensors");
  });

  it("applies in txt2img and img2img only", () => {
    expect([refinerApplies("txt2img"), refinerApplies("img2img"), refinerApplies("inpaint")]).toEqual([true, true, false]);
  });
});

describe("a job's refiner read back", () => {
  it("from a result's info or a History row: its name and switch, or off when the record names none", () => {
    expect(refinerFromRecord({ refiner_checkpoint: "tiny-sdxl", refiner_switch_at: 0.5 })).toEqual({ refiner_checkpoint: "tiny-sdxl", refiner_switch_at: 0.5 });
    expect(refinerFromRecord({ prompt: "p" })).toEqual({ refiner_checkpoint: "", refiner_switch_at: 0.8 });
    expect(refinerFromRecord({ refiner_checkpoint: "tiny-sdxl" })).toEqual({ refiner_checkpoint: "tiny-sdxl", refiner_switch_at: 0.8 });
  });

  it("matches A1111's `name [hash]` to the checkpoint this server lists", () => {
    expect(listedRefiner("xl-refiner [a1b2c3d4e5]", catalog.models)).toBe("xl-refiner.safetensors");
    expect(listedRefiner("tiny-sdxl [0123abcd]", catalog.models)).toBe("tiny-sdxl");
    expect(listedRefiner("tiny-sdxl", catalog.models)).toBe("tiny-sdxl");
    expect(listedRefiner("elsewhere [ffff0000]", catalog.models)).toBeNull();
    expect(listedRefiner("", catalog.models)).toBeNull();
  });

  it("from a PNG's parameters: Refiner and Refiner switch at fill the section; a refiner this server lacks leaves it off", () => {
    const used = settingsFromPngInfo({ prompt: "p", refiner_checkpoint: "xl-refiner [a1b2c3d4e5]", refiner_switch_at: "0.7" }, catalog);
    expect(used).toMatchObject({ refiner_checkpoint: "xl-refiner.safetensors", refiner_switch_at: 0.7 });
    const unknown = settingsFromPngInfo({ prompt: "p", refiner_checkpoint: "elsewhere [ffff0000]", refiner_switch_at: 0.7 }, catalog);
    expect(unknown).toMatchObject({ refiner_checkpoint: "", refiner_switch_at: 0.8 });
  });
});
