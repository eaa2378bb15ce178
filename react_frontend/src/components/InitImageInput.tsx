import { useRef, useState } from "react";
import { ImagePlus, X } from "lucide-react";
import { Button } from "@/components/ui/button";
import { cn } from "@/lib/utils";

/** The init image of img2img and inpaint: the file as it is sent, and what the screen shows. */
export interface InitImage {
  file: Blob;
  name: string;
  /** An object URL for <img>; revoked when the image is replaced. */
  url: string;
  width: number;
  height: number;
}

/** The types the server accepts (services/uploads.py checks them again, with the size limits). */
export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"];

/** Read a file's pixel size; rejects a file the browser cannot decode. */
export async function loadInitImage(file: Blob, name = "image.png"): Promise<InitImage> {
  const url = URL.createObjectURL(file);
  try {
    const size = await new Promise<{ width: number; height: number }>((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve({ width: img.naturalWidth, height: img.naturalHeight });
      img.onerror = () => reject(new Error(`${name} is not an image this browser can read.`));
      img.src = url;
    });
    return { file, name, url, ...size };
  } catch (err) {
    URL.revokeObjectURL(url);
    throw err;
  }
}

/** A drop zone and file picker for a PNG, JPEG or WebP image; shows the one chosen. */
export function InitImageInput({
  id,
  image,
  onImage,
  error,
}: {
  id: string;
  image: InitImage | null;
  onImage: (image: InitImage | null) => void;
  error?: string;
}) {
  const input = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);

  async function take(file: File | undefined) {
    if (!file) return;
    if (!IMAGE_TYPES.includes(file.type)) {
      setProblem(`${file.name} is ${file.type || "not an image"}; use a PNG, JPEG or WebP image.`);
      return;
    }
    try {
      onImage(await loadInitImage(file, file.name));
      setProblem(null);
    } catch (err) {
      setProblem(err instanceof Error ? err.message : String(err));
    }
  }

  const message = problem ?? error;
  return (
    <div className="grid gap-1.5">
      <div
        className={cn(
          "flex min-h-24 items-center gap-3 rounded-lg border border-dashed p-3 text-sm text-muted-foreground",
          dragging && "border-primary bg-primary/5",
          message && "border-destructive",
        )}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDragging(false);
          void take(e.dataTransfer.files[0]);
        }}
        data-testid={`${id}-drop`}
      >
        {image ? <img src={image.url} alt={image.name} className="size-16 rounded border object-contain [image-rendering:pixelated]" data-testid={`${id}-thumb`} /> : <ImagePlus className="size-8" />}
        <div className="grid flex-1 gap-1">
          <span>{image ? `${image.name} · ${image.width}×${image.height}` : "Drop a PNG, JPEG or WebP image here, or"}</span>
          <Button variant="outline" size="sm" className="justify-self-start" onClick={() => input.current?.click()}>
            {image ? "Replace…" : "Choose a file…"}
          </Button>
        </div>
        {image ? (
          <Button variant="ghost" size="icon" aria-label="Remove image" title="Remove image" onClick={() => onImage(null)}>
            <X />
          </Button>
        ) : null}
        <input
          ref={input}
          id={id}
          type="file"
          accept={IMAGE_TYPES.join(",")}
          className="sr-only"
          onChange={(e) => {
            void take(e.target.files?.[0]);
            e.target.value = "";
          }}
          data-testid={`${id}-input`}
        />
      </div>
      {message ? (
        <p className="text-xs text-destructive" data-testid={`${id}-error`}>
          {message}
        </p>
      ) : null}
    </div>
  );
}
