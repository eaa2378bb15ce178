/** Shapes of what Atelier's public Gradio API sends and takes (see README "API"). */

/** Gradio's FileData, as @gradio/client hands it over (url is absolute, on the server's origin). */
export interface FileData {
  path?: string;
  url?: string | null;
  orig_name?: string | null;
  mime_type?: string | null;
  size?: number | null;
}

export interface GalleryItem {
  image: FileData;
  caption: string | null;
}

/** The three ways to make an image; each has its own endpoint (/generate_image, /img2img, /inpaint). */
export const MODES = ["txt2img", "img2img", "inpaint"] as const;
export type Mode = (typeof MODES)[number];

/** One numbered choice, as A1111's API numbers it, with the label every client shows. */
export interface Choice {
  value: number;
  label: string;
}

/** What /choices lists: the choices a job may make. The server is their one source; the client keeps no copy. */
export interface ChoiceLists {
  samplers: string[];
  /** A1111's resize modes (resize_mode). */
  resize_modes: Choice[];
  /** A1111's "Masked content" (inpainting_fill). */
  inpainting_fills: Choice[];
  /** A1111's "Mask mode" (inpainting_mask_invert). */
  mask_modes: Choice[];
  /** Hires upscalers: the built-in ones, then the server's upscaler models. */
  upscalers: string[];
}

/** The inputs of /generate_image, /img2img and /inpaint, in the API's (A1111's) names, with A1111's defaults. */
export interface ImageSettings {
  prompt: string;
  negative_prompt: string;
  width: number;
  height: number;
  steps: number;
  cfg_scale: number;
  seed: number;
  sampler: string;
  batch_count: number;
  /** Checkpoint name from /models; "" = the server's default. */
  model: string;
  /** VAE name from /models; "" = the checkpoint's own. */
  vae: string;
  /** Hires fix (txt2img only). */
  enable_hr: boolean;
  hr_scale: number;
  hr_upscaler: string;
  /** 0 = as many as steps. */
  hr_second_pass_steps: number;
  /** img2img/inpaint strength; with enable_hr, the hires pass's. */
  denoising_strength: number;
  resize_mode: number;
  mask_blur: number;
  inpainting_fill: number;
  /** "Only masked": crop around the mask, paste back. */
  inpaint_full_res: boolean;
  inpaint_full_res_padding: number;
  /** 0 inpaint masked, 1 inpaint not masked. */
  inpainting_mask_invert: number;
}

export const DEFAULT_IMAGE_SETTINGS: ImageSettings = {
  prompt: "",
  negative_prompt: "",
  width: 512,
  height: 512,
  steps: 20,
  cfg_scale: 7,
  seed: -1,
  sampler: "Euler a",
  batch_count: 1,
  model: "",
  vae: "",
  enable_hr: false,
  hr_scale: 2,
  hr_upscaler: "Latent",
  hr_second_pass_steps: 0,
  denoising_strength: 0.75,
  resize_mode: 0,
  mask_blur: 4,
  inpainting_fill: 1,
  inpaint_full_res: false,
  inpaint_full_res_padding: 32,
  inpainting_mask_invert: 0,
};

/** What /models lists. */
export interface ModelCatalog {
  models: string[];
  vaes: string[];
  upscalers: string[];
}

/** What /png_info answers: A1111's API names, plus the raw `parameters` text. */
export type PngInfo = Record<string, unknown> & { parameters?: string };

/** The `info` output of /generate_image: empty at first, complete on the last update. */
export interface ImageInfo extends Partial<ImageSettings> {
  job_id?: number;
  status?: string;
  seeds?: number[];
  model?: string;
  duration_s?: number | null;
  cached?: boolean;
  files?: string[];
  /** The job's ControlNet units (lib/controlnet.ts RecordedUnit), each picture as its inputs/<sha>.png. */
  controlnet?: unknown[];
}

export type ChatStatus = "waiting" | "loading" | "thinking" | "answering" | "done" | "cancelled" | "failed";

/** One update of /chat: each replaces the previous one. */
export interface ChatUpdate {
  conversation_id: number | null;
  status: ChatStatus | string;
  reasoning: string;
  answer: string;
  reasoning_s: number | null;
  message_id: number | null;
  usage: Record<string, unknown>;
  cached?: boolean;
}

export interface StoredMessage {
  id?: number;
  role: "user" | "assistant" | string;
  content: string;
  reasoning: string;
  status: string;
  error?: string | null;
  reasoning_s?: number | null;
  duration_s?: number | null;
  completion_tokens?: number;
  cached?: boolean;
  created_at?: string;
}

export interface Conversation {
  conversation_id: number;
  title: string;
  created_at?: string;
  updated_at?: string;
  messages: StoredMessage[];
}

export interface ConversationSummary {
  conversation_id: number;
  title: string;
  created_at?: string;
  updated_at?: string;
  messages: number;
  favourite?: boolean;
  /** In a search's answer: the title with its matched words marked, and the best matching message's snippet. */
  title_highlight?: Segment[];
  match?: { message_id: number; field: "content" | "reasoning"; snippet: Segment[] } | null;
}

/** A piece of a searched text; `match` marks a word the search matched. Rendered as text, never as HTML. */
export interface Segment {
  text: string;
  match: boolean;
}

/** One page of a search (GET /api/history?q=… or /api/conversations?q=…): `next_cursor` continues it. */
export interface SearchPaging {
  next_cursor: string | null;
  order: string;
  note?: string | null;
  query: { terms: string[]; excluded: string[]; truncated: boolean };
}

export interface JobSearchPage extends SearchPaging {
  jobs: HistoryJob[];
}

export interface ConversationSearchPage extends SearchPaging {
  conversations: ConversationSummary[];
}

export interface ConversationPage {
  conversations: ConversationSummary[];
  next_before: number | null;
}

export interface HistoryFile {
  id: number;
  file: string;
  seed: number;
  width: number;
  height: number;
}

export interface HistoryJob extends ImageSettings {
  job_id: number;
  created_at: string;
  finished_at?: string | null;
  status: string;
  error?: string | null;
  seed_used: number | null;
  model: string;
  duration_s: number | null;
  cached: boolean;
  files: HistoryFile[];
  favourite?: boolean;
  /** The job's ControlNet units (lib/controlnet.ts RecordedUnit), each picture as its inputs/<sha>.png. */
  controlnet?: unknown[];
  /** In a search's answer: the prompts with their matched words marked. */
  highlight?: { prompt?: Segment[]; negative_prompt?: Segment[] };
}

export interface HistoryPage {
  jobs: HistoryJob[];
  next_before: number | null;
}
