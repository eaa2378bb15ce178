import { useState } from "react";
import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { newUnit, type ControlPicture, type ControlUnit } from "@/lib/controlnet";
import { errorFromMessage } from "@/lib/errors";
import type { AtelierConnection } from "@/lib/gradio";
import { ControlNetPanel, useControlNet } from "./ControlNetPanel";

// Radix's slider measures itself; jsdom has no ResizeObserver.
globalThis.ResizeObserver ??= class {
  observe() {}
  unobserve() {}
  disconnect() {}
} as unknown as typeof ResizeObserver;

const MODELS = {
  controlnets: ["tiny-cn-sd15 [1a2b3c4d]"],
  module_list: ["none", "canny", "invert"],
  module_detail: {
    none: { sliders: [{ name: "Resolution", value: 512, min: 64, max: 2048, step: 8 }] },
    canny: {
      sliders: [
        { name: "Resolution", value: 512, min: 64, max: 2048, step: 8 },
        { name: "Low Threshold", value: 100, min: 1, max: 255, step: 1 },
        { name: "High Threshold", value: 200, min: 1, max: 255, step: 1 },
      ],
    },
    invert: { sliders: [] },
  },
  families: { models: {}, controlnets: { "tiny-cn-sd15 [1a2b3c4d]": "sd15" }, default: "sd15" },
};
const picture: ControlPicture = { file: new Blob(["png"], { type: "image/png" }), name: "pose.png", url: "blob:pose", width: 64, height: 64 };

function Harness({ conn, start }: { conn: AtelierConnection; start: ControlUnit[] }) {
  const [units, setUnits] = useState(start);
  const state = useControlNet(conn, units);
  return <ControlNetPanel conn={conn} state={state} units={units} onUnits={setUnits} mode="txt2img" checkpoint="" width={64} height={96} initImage={null} />;
}

function connWith(preview: (payload: Record<string, unknown>) => Promise<unknown>) {
  const call = vi.fn((endpoint: string, payload: Record<string, unknown>) => (endpoint === "/models" ? Promise.resolve(MODELS) : preview(payload)));
  return { conn: { root: "http://h/", call } as unknown as AtelierConnection, call };
}

async function opened(conn: AtelierConnection, start: ControlUnit[]) {
  render(<Harness conn={conn} start={start} />);
  fireEvent.click(screen.getByTestId("controlnet-toggle"));
  // The lists have come: the model picker names the default checkpoint's family.
  await waitFor(() => expect(document.querySelector("label[for=cn-0-model]")?.textContent).toBe("Model (for SD 1.5)"));
}

describe("ControlNetPanel", () => {
  it("shows a module's thresholds, with its labels, only for a module that has them", async () => {
    const { conn } = connWith(() => Promise.reject(new Error("unused")));
    await opened(conn, [newUnit({ module: "canny", model: "tiny-cn-sd15 [1a2b3c4d]" }), newUnit({ module: "invert" })]);
    expect(document.querySelector("label[for=cn-0-threshold-a]")?.textContent).toBe("Low Threshold");
    expect((document.querySelector("#cn-0-threshold-b") as HTMLInputElement).value).toBe("200");
    expect(document.querySelector("#cn-0-resolution")).not.toBeNull();
    expect(screen.getByTestId("cn-0-model").textContent).toContain("tiny-cn-sd15");
    fireEvent.mouseDown(screen.getByTestId("cn-tab-1"));
    await waitFor(() => expect(screen.getByTestId("cn-unit-1")).toBeTruthy());
    for (const id of ["#cn-1-threshold-a", "#cn-1-threshold-b", "#cn-1-resolution", "#cn-1-pixel-perfect"]) expect(document.querySelector(id)).toBeNull();
  });

  it("previews the map with the unit's module and numbers at the job's size; a refusal goes on the field and keeps the map", async () => {
    let refuse = false;
    const { conn, call } = connWith(() =>
      refuse
        ? Promise.reject(errorFromMessage("ControlNet unit 0: threshold_a must be between 1 and 255 for this module (Low Threshold), or -1 for its default 100; got 999.0"))
        : Promise.resolve({ image: "data:image/png;base64,AAAA", width: 64, height: 96 }),
    );
    await opened(conn, [newUnit({ enabled: true, image: picture, module: "canny", threshold_a: 50, threshold_b: 200, processor_res: 512 })]);
    fireEvent.click(screen.getByTestId("cn-0-preview"));
    await waitFor(() => expect(screen.getByTestId("cn-0-map-image").getAttribute("src")).toBe("data:image/png;base64,AAAA"));
    expect(call).toHaveBeenCalledWith("/controlnet_preview", {
      image: picture.file, width: 64, height: 96, module: "canny", processor_res: 512, threshold_a: 50, threshold_b: 200, pixel_perfect: false,
      resize_mode: "Crop and Resize",
    });
    refuse = true;
    await act(async () => fireEvent.click(screen.getByTestId("cn-0-preview")));
    await waitFor(() => expect(screen.getByTestId("cn-0-threshold-a-error").textContent).toContain("threshold_a must be between 1 and 255"));
    expect(screen.getByTestId("cn-0-map-image").getAttribute("src")).toBe("data:image/png;base64,AAAA");
  });

  it("asks for a picture before previewing, without calling the server", async () => {
    const { conn, call } = connWith(() => Promise.resolve({}));
    await opened(conn, [newUnit({ module: "canny" })]);
    fireEvent.click(screen.getByTestId("cn-0-preview"));
    await waitFor(() => expect(screen.getByTestId("cn-0-image-error").textContent).toContain("Choose a control picture"));
    expect(call).not.toHaveBeenCalledWith("/controlnet_preview", expect.anything());
  });

  it("adds units up to four and removes them down to one", async () => {
    const { conn } = connWith(() => Promise.resolve({}));
    await opened(conn, [newUnit(), newUnit()]);
    fireEvent.click(screen.getByTestId("cn-add"));
    fireEvent.click(screen.getByTestId("cn-add"));
    expect(screen.getAllByRole("tab").map((t) => t.textContent)).toEqual(["Unit 0", "Unit 1", "Unit 2", "Unit 3"]);
    expect((screen.getByTestId("cn-add") as HTMLButtonElement).disabled).toBe(true);
    for (let left = 4; left > 1; left--) fireEvent.click(screen.getByRole("button", { name: /^Remove unit/ }));
    expect(screen.getAllByRole("tab")).toHaveLength(1);
    expect(screen.queryByRole("button", { name: /^Remove unit/ })).toBeNull();
  });
});
