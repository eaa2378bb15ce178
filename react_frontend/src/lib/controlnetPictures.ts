/**
 * ControlNet pictures in the browser: a unit's picture as the base64 a job carries inside its JSON body (which the
 * server caps at 1 MiB for the whole request), and a recorded job's pictures fetched back from history.
 */
import { loadInitImage } from "@/components/InitImageInput";
import { pictureSha, type ControlPicture, type RecordedUnit } from "./controlnet";

/** The longest side a picture is sent at, as the Gradio panel sends it: the preprocessors work at 512 by default. */
export const PICTURE_SIDE = 1024;
/** Room for the job's pictures inside the server's 1 MiB body cap, shared by the units sent. */
export const PICTURES_BUDGET = 900_000;

function dataUrlOf(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error ?? new Error("Could not read the control picture."));
    reader.readAsDataURL(blob);
  });
}

function drawn(picture: ControlPicture, side: number): Promise<HTMLCanvasElement> {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const scale = Math.min(1, side / Math.max(img.naturalWidth, img.naturalHeight));
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
      canvas.getContext("2d")!.drawImage(img, 0, 0, canvas.width, canvas.height);
      resolve(canvas);
    };
    img.onerror = () => reject(new Error(`${picture.name} is not an image this browser can read.`));
    img.src = picture.url;
  });
}

/**
 * A unit's picture as base64, within `budget` characters: the file itself when it is a PNG no longer than
 * PICTURE_SIDE a side and fits (its pixels exactly), else redrawn at most PICTURE_SIDE a side as PNG, then as JPEG,
 * then smaller, until it fits.
 */
export async function encodePicture(picture: ControlPicture, budget: number): Promise<string> {
  const bare = (url: string) => url.slice(url.indexOf(",") + 1);
  if (picture.file.type === "image/png" && Math.max(picture.width, picture.height) <= PICTURE_SIDE) {
    const own = bare(await dataUrlOf(picture.file));
    if (own.length <= budget) return own;
  }
  for (let side = PICTURE_SIDE; side >= 64; side = Math.floor(side * 0.7)) {
    const canvas = await drawn(picture, side);
    for (const [type, quality] of [["image/png", undefined], ["image/jpeg", 0.9]] as const) {
      const encoded = bare(canvas.toDataURL(type, quality));
      if (encoded.length <= budget) return encoded;
    }
  }
  throw new Error(`${picture.name} is too detailed to send as a control picture; use a smaller one.`);
}

/** The pictures of a job's recorded units, from history's copies (GET /api/inputs/{sha}); null where a unit had
 * none (img2img's picture was used) or the copy is gone. */
export async function recordedPictures(records: readonly RecordedUnit[], root: string): Promise<(ControlPicture | null)[]> {
  return Promise.all(
    records.map(async (record, i) => {
      const sha = pictureSha(record);
      if (!sha) return null;
      try {
        const response = await fetch(new URL(`api/inputs/${sha}`, root), { credentials: "include" });
        if (!response.ok) return null;
        return await loadInitImage(await response.blob(), `control-${i}.png`);
      } catch {
        return null;
      }
    }),
  );
}
