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

export const SAMPLERS = ["Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "LMS", "Heun", "UniPC"] as const;

/** The inputs of /generate_image, in the API's names. */
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
};

/** The `info` output of /generate_image: empty at first, complete on the last update. */
export interface ImageInfo extends Partial<ImageSettings> {
  job_id?: number;
  status?: string;
  seeds?: number[];
  model?: string;
  duration_s?: number | null;
  cached?: boolean;
  files?: string[];
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
}

export interface HistoryPage {
  jobs: HistoryJob[];
  next_before: number | null;
}
