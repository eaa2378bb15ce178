import { describe, expect, it } from "vitest";
import { clearMask, createMask, maskToRgba, paintedPixels, paintStroke, stampDisc, strokePoints, toImagePoint } from "./mask";

const at = (mask: ReturnType<typeof createMask>, x: number, y: number) => mask.data[y * mask.width + x];

describe("mask bitmap", () => {
  it("maps a pointer on the displayed image to image pixels, whatever the display size, clamped inside", () => {
    const rect = { left: 100, top: 50, width: 256, height: 128 };
    // A 64×32 image shown 4× larger.
    expect(toImagePoint(100, 50, rect, 64, 32)).toEqual({ x: 0, y: 0 });
    expect(toImagePoint(100 + 128, 50 + 64, rect, 64, 32)).toEqual({ x: 32, y: 16 });
    expect(toImagePoint(0, 0, rect, 64, 32)).toEqual({ x: 0, y: 0 });
    expect(toImagePoint(10_000, 10_000, rect, 64, 32)).toEqual({ x: 63, y: 31 });
  });

  it("stamps a disc of the brush radius and nothing outside it", () => {
    const mask = createMask(32, 32);
    stampDisc(mask, { x: 16, y: 16 }, 4);
    expect(at(mask, 16, 16)).toBe(255);
    expect(at(mask, 12, 16)).toBe(255); // pixel centre 12.5 is 3.5 from the centre
    expect(at(mask, 11, 16)).toBe(0); // 4.5 away
    expect(at(mask, 19, 19)).toBe(0); // the disc's corner is outside
    // The area is close to π r².
    expect(paintedPixels(mask)).toBeGreaterThan(Math.PI * 16 * 0.8);
    expect(paintedPixels(mask)).toBeLessThan(Math.PI * 16 * 1.2);
  });

  it("clips discs at the image's edges", () => {
    const mask = createMask(8, 8);
    stampDisc(mask, { x: 0, y: 0 }, 3);
    expect(at(mask, 0, 0)).toBe(255);
    expect(mask.data.length).toBe(64);
    expect(paintedPixels(mask)).toBeLessThan(Math.PI * 9);
  });

  it("fills the path between two pointer positions without gaps", () => {
    expect(strokePoints(null, { x: 5, y: 5 }, 4)).toEqual([{ x: 5, y: 5 }]);
    const mask = createMask(64, 16);
    paintStroke(mask, { x: 2, y: 8 }, { x: 60, y: 8 }, 2);
    for (let x = 2; x < 60; x++) expect(at(mask, x, 8), `pixel ${x}`).toBe(255);
    expect(at(mask, 30, 2)).toBe(0);
  });

  it("exports white where painted and black elsewhere, opaque, and clears", () => {
    const mask = createMask(4, 1);
    mask.data[1] = 255;
    expect(Array.from(maskToRgba(mask))).toEqual([0, 0, 0, 255, 255, 255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255]);
    clearMask(mask);
    expect(paintedPixels(mask)).toBe(0);
  });
});
