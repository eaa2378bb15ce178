import { createRef } from "react";
import { fireEvent, render, screen } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { MaskEditor, type MaskEditorHandle } from "./MaskEditor";

beforeEach(() => {
  // jsdom has neither (Radix's slider measures itself; jsdom draws nothing): the bitmap is what is tested.
  vi.stubGlobal("ResizeObserver", class { observe() {} unobserve() {} disconnect() {} });
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
});

/** The canvas shown at 4× the image's 32×16 pixels, at (10, 20) on the page. */
function showAt(canvas: HTMLElement) {
  vi.spyOn(canvas, "getBoundingClientRect").mockReturnValue({ left: 10, top: 20, width: 128, height: 64, right: 138, bottom: 84, x: 10, y: 20, toJSON: () => ({}) });
}

describe("MaskEditor", () => {
  it("paints along a mouse drag, in image pixels, and clears", async () => {
    const painted = vi.fn();
    const ref = createRef<MaskEditorHandle>();
    render(<MaskEditor ref={ref} src="blob:x" width={32} height={16} onPainted={painted} />);
    const canvas = screen.getByTestId("mask-canvas");
    showAt(canvas);
    expect(canvas).toHaveProperty("width", 32);
    expect(canvas.getAttribute("data-painted")).toBe("0");
    await expect(ref.current!.toPng()).resolves.toBeNull(); // nothing drawn: no mask to send

    // A move without the button down paints nothing.
    fireEvent.pointerMove(canvas, { clientX: 50, clientY: 50, pointerId: 1 });
    await expect(ref.current!.toPng()).resolves.toBeNull();
    fireEvent.pointerDown(canvas, { clientX: 14, clientY: 52, button: 0, pointerId: 1 });
    fireEvent.pointerMove(canvas, { clientX: 130, clientY: 52, pointerId: 1 });
    fireEvent.pointerUp(canvas, { clientX: 130, clientY: 52, pointerId: 1 });
    const pixels = Number(canvas.getAttribute("data-painted"));
    // A stroke across the width, with the default brush (a tenth of the short side: 2 px wide at least).
    expect(pixels).toBeGreaterThanOrEqual(29 * 2);
    expect(pixels).toBeLessThan(32 * 8);
    expect(painted).toHaveBeenLastCalledWith(pixels);

    fireEvent.click(screen.getByTestId("mask-clear"));
    expect(canvas.getAttribute("data-painted")).toBe("0");
    expect(painted).toHaveBeenLastCalledWith(0);
  });

  it("starts empty again for a new image", () => {
    const { rerender } = render(<MaskEditor src="blob:a" width={32} height={16} />);
    const canvas = screen.getByTestId("mask-canvas");
    showAt(canvas);
    fireEvent.pointerDown(canvas, { clientX: 60, clientY: 50, button: 0, pointerId: 1 });
    fireEvent.pointerUp(canvas, { pointerId: 1 });
    expect(Number(canvas.getAttribute("data-painted"))).toBeGreaterThan(0);
    rerender(<MaskEditor src="blob:b" width={48} height={48} />);
    expect(screen.getByTestId("mask-canvas").getAttribute("data-painted")).toBe("0");
    expect(screen.getByTestId("mask-canvas")).toHaveProperty("width", 48);
  });
});
