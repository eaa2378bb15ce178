import { fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { catalogFrom } from "@/lib/api";
import { DEFAULT_IMAGE_SETTINGS, type ImageSettings, type Mode } from "@/lib/types";
import { RefinerPanel } from "./RefinerPanel";

// Radix's slider measures itself; jsdom has no ResizeObserver.
globalThis.ResizeObserver ??= class {
  observe() {}
  unobserve() {}
  disconnect() {}
} as unknown as typeof ResizeObserver;

const catalog = catalogFrom({ models: ["tiny-sd", "tiny-sdxl"], families: { models: { "tiny-sd": "sd15", "tiny-sdxl": "sdxl" }, default: "sd15" } });

function show(mode: Mode, settings: Partial<ImageSettings> = {}, errors: Record<string, string> = {}) {
  const set = vi.fn();
  render(<RefinerPanel mode={mode} settings={{ ...DEFAULT_IMAGE_SETTINGS, ...settings }} catalog={catalog} set={set} fieldError={(name) => errors[name]} />);
  return set;
}

describe("RefinerPanel", () => {
  it("is not there in inpaint, where the server has no refiner", () => {
    show("inpaint", { refiner_checkpoint: "tiny-sdxl" });
    expect(screen.queryByTestId("refiner-section")).toBeNull();
  });

  it("starts closed and off; opened, it offers the checkpoint and no switch until one is picked", () => {
    show("txt2img");
    expect(screen.getByTestId("refiner-state").textContent).toBe("off");
    expect(screen.queryByTestId("refiner-checkpoint")).toBeNull();
    fireEvent.click(screen.getByTestId("refiner-toggle"));
    expect(screen.getByTestId("refiner-checkpoint").textContent).toContain("None");
    expect(screen.queryByLabelText("Switch at")).toBeNull();
  });

  it("with a refiner (as Reuse fills it) opens by itself with the switch, and a typed switch goes to the form", () => {
    const set = show("img2img", { model: "tiny-sdxl", refiner_checkpoint: "tiny-sdxl", refiner_switch_at: 0.6 });
    expect(screen.getByTestId("refiner-state").textContent).toBe("tiny-sdxl at 0.6");
    expect(screen.getByTestId("refiner-checkpoint").textContent).toContain("tiny-sdxl");
    const box = screen.getByRole("spinbutton");
    fireEvent.change(box, { target: { value: "0.7" } });
    fireEvent.blur(box);
    expect(set).toHaveBeenCalledWith("refiner_switch_at", 0.7);
    expect(screen.queryByTestId("refiner-note")).toBeNull();
  });

  it("shows the server's messages next to its fields, opening the section", () => {
    show("txt2img", { refiner_checkpoint: "" }, { refiner_checkpoint: "refiner_checkpoint: no such checkpoint" });
    expect(screen.getByTestId("refiner-checkpoint-error").textContent).toBe("refiner_checkpoint: no such checkpoint");
  });

  it("says before sending that an SD 1.5 base cannot hand over to a refiner", () => {
    show("txt2img", { model: "", refiner_checkpoint: "tiny-sdxl" });
    expect(screen.getByTestId("refiner-note").textContent).toMatch(/SD 1\.5/);
  });
});
