import { useEffect, useImperativeHandle, useRef, useState, type PointerEvent, type Ref } from "react";
import { Eraser } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Slider } from "@/components/ui/slider";
import { clearMask, createMask, maskToPng, paintedPixels, paintStroke, toImagePoint, type MaskBitmap, type Point } from "@/lib/mask";

export interface MaskEditorHandle {
  /** The mask as a PNG (white = repaint), or null when nothing is painted. */
  toPng(): Promise<Blob | null>;
  clear(): void;
}

interface Props {
  ref?: Ref<MaskEditorHandle>;
  /** The init image (an object URL) and its size in pixels. */
  src: string;
  width: number;
  height: number;
  /** How many pixels are painted, after each stroke and on clear. */
  onPainted?: (pixels: number) => void;
}

/** A canvas over the init image; the mouse, a pen or a finger paints what the model repaints. */
export function MaskEditor({ ref, src, width, height, onPainted }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const mask = useRef<MaskBitmap>(createMask(width, height));
  const last = useRef<Point | null>(null);
  // Brush size in image pixels, so that a stroke covers the same part of any image whatever its display size.
  const [brush, setBrush] = useState(() => Math.max(2, Math.round(Math.min(width, height) / 10)));
  const [painted, setPainted] = useState(0);

  const report = (pixels: number) => {
    setPainted(pixels);
    onPainted?.(pixels);
  };

  useEffect(() => {
    // A new image starts with an empty mask of its size.
    mask.current = createMask(width, height);
    setBrush(Math.max(2, Math.round(Math.min(width, height) / 10)));
    canvas.current?.getContext("2d")?.clearRect(0, 0, width, height);
    report(0);
  }, [src, width, height]); // only a new image resets the mask (report is a new function each render)


  function clear() {
    clearMask(mask.current);
    canvas.current?.getContext("2d")?.clearRect(0, 0, width, height);
    report(0);
  }

  useImperativeHandle(ref, () => ({
    toPng: async () => (paintedPixels(mask.current) ? maskToPng(mask.current) : null),
    clear,
  }));

  function paint(event: PointerEvent<HTMLCanvasElement>) {
    const target = event.currentTarget;
    const point = toImagePoint(event.clientX, event.clientY, target.getBoundingClientRect(), width, height);
    const radius = brush / 2;
    const stamped = paintStroke(mask.current, last.current, point, radius);
    last.current = point;
    const context = target.getContext("2d");
    if (context) {
      // Opaque discs on a half-transparent canvas: overlapping stamps keep one even tint.
      context.fillStyle = "#ec4899";
      for (const p of stamped) {
        context.beginPath();
        context.arc(p.x, p.y, radius, 0, Math.PI * 2);
        context.fill();
      }
    }
  }

  return (
    <div className="grid gap-2" data-testid="mask-editor">
      <div className="relative mx-auto w-full max-w-[28rem] overflow-hidden rounded-lg border bg-muted/40" style={{ aspectRatio: `${width} / ${height}` }}>
        <img src={src} alt="Init image" className="absolute inset-0 h-full w-full [image-rendering:pixelated]" draggable={false} />
        <canvas
          ref={canvas}
          width={width}
          height={height}
          aria-label="Mask: paint what to repaint"
          data-testid="mask-canvas"
          data-painted={painted}
          className="absolute inset-0 h-full w-full cursor-crosshair touch-none opacity-60"
          onPointerDown={(event) => {
            if (event.button !== 0) return;
            event.currentTarget.setPointerCapture?.(event.pointerId);
            last.current = null;
            paint(event);
          }}
          onPointerMove={(event) => {
            if (last.current) paint(event);
          }}
          onPointerUp={() => {
            if (!last.current) return;
            last.current = null;
            report(paintedPixels(mask.current));
          }}
          onPointerCancel={() => {
            last.current = null;
            report(paintedPixels(mask.current));
          }}
        />
      </div>
      <div className="flex flex-wrap items-center gap-3">
        <label htmlFor="brush-size" className="text-sm">
          Brush
        </label>
        <Slider id="brush-size" aria-label="Brush size" className="max-w-48" min={1} max={Math.max(8, Math.round(Math.max(width, height) / 2))} step={1} value={[brush]} onValueChange={([v]) => setBrush(v)} />
        <span className="text-xs text-muted-foreground" data-testid="brush-size">
          {brush} px
        </span>
        <Button variant="outline" size="sm" className="ml-auto" onClick={clear} disabled={!painted} data-testid="mask-clear">
          <Eraser />
          Clear mask
        </Button>
      </div>
    </div>
  );
}
