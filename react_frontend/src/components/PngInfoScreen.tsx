import { useState } from "react";
import { FileSearch, Loader2, Send } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { ErrorAlert } from "@/components/ErrorAlert";
import { InitImageInput, type InitImage } from "@/components/InitImageInput";
import { settingsFromPngInfo } from "@/lib/api";
import { errorFromException, isAppError, type AppError } from "@/lib/errors";
import type { AtelierConnection } from "@/lib/gradio";
import type { ImageSettings, Mode, ModelCatalog, PngInfo } from "@/lib/types";

interface Props {
  conn: AtelierConnection;
  catalog: ModelCatalog;
  /** "Send to": the settings the PNG gives, and the PNG itself as the init image (img2img, inpaint). */
  onSend: (mode: Mode, settings: Partial<ImageSettings>, image: InitImage, controlnet?: unknown[]) => void;
}

const SEND_LABELS: Record<Mode, string> = { txt2img: "txt2img", img2img: "img2img", inpaint: "inpaint" };

function show(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Drop a PNG (from Atelier or AUTOMATIC1111) and see the settings it was made with; send them to a mode. */
export function PngInfoScreen({ conn, catalog, onSend }: Props) {
  const [image, setImage] = useState<InitImage | null>(null);
  const [info, setInfo] = useState<PngInfo | null>(null);
  const [reading, setReading] = useState(false);
  const [error, setError] = useState<AppError | null>(null);

  async function read(next: InitImage | null) {
    if (image && image.url !== next?.url) URL.revokeObjectURL(image.url);
    setImage(next);
    setInfo(null);
    setError(null);
    if (!next) return;
    setReading(true);
    try {
      // Positional: /png_info takes one file, whatever its parameter is called.
      const answer = await conn.call<PngInfo | null>("/png_info", [next.file]);
      setInfo(answer && typeof answer === "object" ? answer : {});
    } catch (err) {
      setError(isAppError(err) ? err : errorFromException(err));
    } finally {
      setReading(false);
    }
  }

  const fields = info ? Object.entries(info).filter(([key, value]) => key !== "parameters" && value !== null && value !== "") : [];
  const hasSettings = !!info && (typeof info.parameters === "string" ? info.parameters.trim() !== "" : fields.length > 0);

  return (
    <div className="grid gap-4 lg:grid-cols-[minmax(0,5fr)_minmax(0,6fr)]">
      <Card className="content-start">
        <CardHeader>
          <CardTitle>PNG Info</CardTitle>
          <CardDescription>Drop a PNG made by Atelier or AUTOMATIC1111 to read the settings stored in it.</CardDescription>
        </CardHeader>
        <CardContent className="grid gap-3">
          <InitImageInput id="png-info" image={image} onImage={(next) => void read(next)} />
          {image ? <img src={image.url} alt={image.name} className="max-h-80 w-full rounded-md border object-contain [image-rendering:pixelated]" /> : null}
        </CardContent>
      </Card>
      <div className="grid content-start gap-4">
        <ErrorAlert error={error} onDismiss={() => setError(null)} />
        {reading ? (
          <div className="flex items-center gap-2 text-sm text-muted-foreground">
            <Loader2 className="animate-spin" /> Reading…
          </div>
        ) : null}
        {info && image ? (
          <Card data-testid="png-info-result" data-has-settings={hasSettings}>
            <CardHeader>
              <CardTitle>Settings</CardTitle>
              {!hasSettings ? <CardDescription>This PNG has no generation settings in it.</CardDescription> : null}
            </CardHeader>
            <CardContent className="grid gap-3">
              {typeof info.parameters === "string" && info.parameters ? (
                <pre className="max-h-60 overflow-auto rounded-md bg-muted p-3 text-xs whitespace-pre-wrap" data-testid="png-info-parameters">
                  {info.parameters}
                </pre>
              ) : null}
              {fields.length ? (
                <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1 text-sm" data-testid="png-info-fields">
                  {fields.map(([key, value]) => (
                    <div key={key} className="contents">
                      <dt className="font-mono text-xs text-muted-foreground">{key}</dt>
                      <dd className="break-words" data-field={key}>
                        {show(value)}
                      </dd>
                    </div>
                  ))}
                </dl>
              ) : null}
              <div className="flex flex-wrap gap-2">
                {(Object.keys(SEND_LABELS) as Mode[]).map((mode) => (
                  <Button key={mode} variant="outline" size="sm" disabled={!hasSettings} onClick={() => onSend(mode, settingsFromPngInfo(info, catalog), image, Array.isArray(info.controlnet) ? info.controlnet : undefined)} data-testid={`send-to-${mode}`}>
                    {mode === "txt2img" ? <Send /> : <FileSearch />}
                    Send to {SEND_LABELS[mode]}
                  </Button>
                ))}
              </div>
            </CardContent>
          </Card>
        ) : null}
      </div>
    </div>
  );
}
