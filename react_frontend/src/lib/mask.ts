/**
 * The inpaint mask as the editor draws it: one byte per pixel of the init image (255 = repaint, 0 = keep),
 * painted with a round brush along the pointer's path. The bitmap is the truth that is sent (as a black and
 * white PNG); the canvas on screen only shows it. Pure functions, unit tested without a browser.
 */

export interface MaskBitmap {
  readonly width: number;
  readonly height: number;
  /** Row-major, 0 or 255. */
  readonly data: Uint8Array;
}

export interface Point {
  x: number;
  y: number;
}

export interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

export function createMask(width: number, height: number): MaskBitmap {
  return { width, height, data: new Uint8Array(width * height) };
}

export function clearMask(mask: MaskBitmap): void {
  mask.data.fill(0);
}

/** How many pixels are painted (0: nothing drawn yet). */
export function paintedPixels(mask: MaskBitmap): number {
  let count = 0;
  for (const value of mask.data) if (value) count += 1;
  return count;
}

/** A pointer position on the displayed image (CSS pixels) as a pixel of the image, clamped inside it. */
export function toImagePoint(clientX: number, clientY: number, rect: Rect, width: number, height: number): Point {
  const x = ((clientX - rect.left) / Math.max(rect.width, 1)) * width;
  const y = ((clientY - rect.top) / Math.max(rect.height, 1)) * height;
  return { x: Math.min(Math.max(x, 0), width - 1), y: Math.min(Math.max(y, 0), height - 1) };
}

/** Paint a filled disc of `radius` image pixels around a point. */
export function stampDisc(mask: MaskBitmap, center: Point, radius: number): void {
  const r = Math.max(radius, 0.5);
  const x0 = Math.max(0, Math.floor(center.x - r));
  const x1 = Math.min(mask.width - 1, Math.ceil(center.x + r));
  const y0 = Math.max(0, Math.floor(center.y - r));
  const y1 = Math.min(mask.height - 1, Math.ceil(center.y + r));
  const r2 = r * r;
  for (let y = y0; y <= y1; y++) {
    // Pixel centres inside the disc: the same pixels a canvas fills for arc(center, r).
    const dy = y + 0.5 - center.y;
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - center.x;
      if (dx * dx + dy * dy <= r2) mask.data[y * mask.width + x] = 255;
    }
  }
}

/** The points a stroke from `from` to `to` stamps: close enough (a quarter of the radius) that it has no gaps. */
export function strokePoints(from: Point | null, to: Point, radius: number): Point[] {
  if (!from) return [to];
  const distance = Math.hypot(to.x - from.x, to.y - from.y);
  const count = Math.max(1, Math.ceil(distance / Math.max(radius / 4, 0.5)));
  const points: Point[] = [];
  for (let i = 1; i <= count; i++) points.push({ x: from.x + ((to.x - from.x) * i) / count, y: from.y + ((to.y - from.y) * i) / count });
  return points;
}

/** Paint one pointer movement; returns the points stamped (the screen draws the same discs). */
export function paintStroke(mask: MaskBitmap, from: Point | null, to: Point, radius: number): Point[] {
  const points = strokePoints(from, to, radius);
  for (const point of points) stampDisc(mask, point, radius);
  return points;
}

/** The mask as opaque RGBA pixels: white where painted, black elsewhere (what the server reads as mode "L"). */
export function maskToRgba(mask: MaskBitmap): Uint8ClampedArray<ArrayBuffer> {
  const rgba = new Uint8ClampedArray(new ArrayBuffer(mask.width * mask.height * 4));
  for (let i = 0; i < mask.data.length; i++) {
    const v = mask.data[i];
    rgba[i * 4] = v;
    rgba[i * 4 + 1] = v;
    rgba[i * 4 + 2] = v;
    rgba[i * 4 + 3] = 255;
  }
  return rgba;
}

/** The mask as a PNG file, to send as /inpaint's `mask`. */
export async function maskToPng(mask: MaskBitmap): Promise<Blob> {
  const canvas = document.createElement("canvas");
  canvas.width = mask.width;
  canvas.height = mask.height;
  const context = canvas.getContext("2d");
  if (!context) throw new Error("This browser cannot draw on a canvas, so it cannot make a mask.");
  context.putImageData(new ImageData(maskToRgba(mask), mask.width, mask.height), 0, 0);
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("Could not encode the mask as PNG."))), "image/png"),
  );
}
