import { describe, expect, it } from "vitest";
import {
  chatUpdateFrom,
  consume,
  describeQueue,
  EMPTY_IMAGE_VIEW,
  INITIAL_PROGRESS,
  isUnchanged,
  nextProgress,
  nextValue,
  percentDone,
  reduceImage,
  seedOf,
  settingsFromInfo,
  thinkingLabel,
  type GradioMessage,
} from "./stream";

const UNCHANGED = { __type__: "update" };
const file = (name: string) => ({ path: `/tmp/${name}`, url: `http://127.0.0.1:7860/gradio_api/file=/tmp/${name}`, orig_name: name });

async function* messages(list: GradioMessage[], options: { throwAt?: number } = {}): AsyncGenerator<GradioMessage> {
  for (let i = 0; i < list.length; i++) {
    if (options.throwAt === i) throw new Error("Connection errored out. ");
    yield list[i];
  }
}

describe("output updates", () => {
  it("keeps the previous value for Gradio's 'unchanged' update", () => {
    expect(isUnchanged(UNCHANGED)).toBe(true);
    expect(isUnchanged({ __type__: "update", value: null })).toBe(false);
    expect(nextValue("old", UNCHANGED)).toBe("old");
    expect(nextValue("old", "new")).toBe("new");
    expect(nextValue("old", { __type__: "update", value: "set" })).toBe("set");
    expect(nextValue<string | null>("old", null)).toBeNull();
  });
});

describe("image stream", () => {
  it("folds the updates of /generate_image into preview, progress, gallery and info", () => {
    let view = EMPTY_IMAGE_VIEW;
    view = reduceImage(view, [UNCHANGED, "💤 model loads on the first request.", UNCHANGED, {}]);
    expect(view).toMatchObject({ preview: null, progressText: "💤 model loads on the first request.", gallery: [], info: {} });

    const info = { job_id: 7, status: "running", seed: 42, seeds: [42, 43], width: 64, height: 64 };
    view = reduceImage(view, [UNCHANGED, "Job 7: starting (seed 42)", UNCHANGED, info]);
    view = reduceImage(view, [file("p1.jpeg"), "Job 7: step 2/16 · 0.3 s", UNCHANGED, info]);
    expect(view.preview?.orig_name).toBe("p1.jpeg");
    // A later update that leaves the preview unchanged keeps it.
    view = reduceImage(view, [UNCHANGED, "Job 7: step 3/16 · 0.4 s", UNCHANGED, info]);
    expect(view.preview?.orig_name).toBe("p1.jpeg");
    expect(view.progressText).toBe("Job 7: step 3/16 · 0.4 s");

    const done = { ...info, status: "done", duration_s: 1.2, files: ["a.png", "b.png"] };
    view = reduceImage(view, [
      UNCHANGED,
      "Job 7: done in 1.2 s (seed 42)",
      [
        { image: file("000007-0-42.png"), caption: "seed 42" },
        { image: file("000007-1-43.png"), caption: "seed 43" },
      ],
      done,
    ]);
    expect(view.gallery.map((g) => g.image.orig_name)).toEqual(["000007-0-42.png", "000007-1-43.png"]);
    expect(view.info.status).toBe("done");
    expect(seedOf(view.info, 1, view.gallery[1].caption)).toBe(43);
    expect(seedOf({}, 0, "seed 99")).toBe(99);
  });

  it("accepts gallery items as [file, caption] pairs too", () => {
    const view = reduceImage(EMPTY_IMAGE_VIEW, [null, "done", [[file("x.png"), "seed 1"]], { job_id: 1 }]);
    expect(view.gallery).toEqual([{ image: file("x.png"), caption: "seed 1" }]);
  });

  it("reuses the seed actually used, never -1", () => {
    expect(settingsFromInfo({ prompt: "p", seed: 123, width: 64, sampler: "Euler", model: "m", job_id: 3 })).toEqual({
      prompt: "p",
      seed: 123,
      width: 64,
      sampler: "Euler",
      // The info names no refiner: the job had none, so Reuse turns a picked one off.
      refiner_checkpoint: "",
      refiner_switch_at: 0.8,
    });
  });

  it("reuses the job's refiner and its switch", () => {
    expect(settingsFromInfo({ prompt: "p", refiner_checkpoint: "xl", refiner_switch_at: 0.65 })).toMatchObject({ refiner_checkpoint: "xl", refiner_switch_at: 0.65 });
  });
});

describe("progress", () => {
  it("shows the queue position, then the steps", () => {
    let p = nextProgress(INITIAL_PROGRESS, { type: "status", stage: "pending" });
    expect(p.phase).toBe("connecting");
    p = nextProgress(p, { type: "status", stage: "pending", position: 2, size: 3, eta: 12.3 });
    expect(p).toMatchObject({ phase: "queued", position: 2, queueSize: 3 });
    expect(describeQueue(p)).toBe("In queue: 2 jobs ahead · about 12 s");
    expect(describeQueue({ ...p, position: 0, etaS: null })).toBe("In queue: next in line");
    p = nextProgress(p, { type: "status", stage: "pending", original_msg: "process_starts", position: 0 });
    expect(p.phase).toBe("running");
    p = nextProgress(p, {
      type: "status",
      stage: "pending",
      progress_data: [{ index: 5, length: 20, unit: "steps", progress: null, desc: "Job 1: step 5/20" }],
    });
    expect(p).toMatchObject({ phase: "running", step: 5, total: 20 });
    expect(percentDone(p)).toBe(25);
    expect(percentDone(INITIAL_PROGRESS, "Job 1: step 3/4 · 1.0 s")).toBe(75);
    expect(percentDone(INITIAL_PROGRESS, "starting")).toBeNull();
  });
});

describe("consume", () => {
  it("reports each data update and completes with the last one", async () => {
    const seen: unknown[][] = [];
    const progress: string[] = [];
    const outcome = await consume(
      messages([
        { type: "status", stage: "pending", position: 0, size: 1 },
        { type: "status", stage: "generating" },
        { type: "data", data: ["a"] },
        { type: "data", data: ["b"] },
        { type: "status", stage: "complete" },
      ]),
      { onData: (d) => seen.push(d), onProgress: (p) => progress.push(p.phase) },
    );
    expect(seen).toEqual([["a"], ["b"]]);
    expect(progress).toEqual(["queued", "running"]);
    expect(outcome).toEqual({ kind: "complete", data: ["b"] });
  });

  it("turns a validation error into per-field messages", async () => {
    const outcome = await consume(
      messages([
        {
          type: "status",
          stage: "error",
          code: "validation_error",
          message: [
            { is_valid: true, message: "", parameter_name: "prompt" },
            { is_valid: false, message: "width must be a multiple of 8 between 64 and 2048, got 65.", parameter_name: "width" },
          ],
        },
      ]),
    );
    expect(outcome.kind).toBe("error");
    if (outcome.kind !== "error") return;
    expect(outcome.error.kind).toBe("validation");
    expect(outcome.error.fields).toEqual({ width: "width must be a multiple of 8 between 64 and 2048, got 65." });
  });

  it("treats the error that follows Stop as the cancellation", async () => {
    let stopped = false;
    const seen: unknown[][] = [];
    const outcome = await consume(
      (async function* () {
        yield { type: "data", data: ["step 1"] } as GradioMessage;
        stopped = true;
        yield { type: "data", data: ["late"] } as GradioMessage;
        yield { type: "status", stage: "error", message: "An Unexpected Error Occurred!" } as GradioMessage;
      })(),
      { onData: (d) => seen.push(d), isCancelled: () => stopped },
    );
    expect(outcome).toEqual({ kind: "cancelled", data: ["step 1"] });
    expect(seen).toEqual([["step 1"]]);
  });

  it("reports a stream that ends with nothing, or throws, as a lost connection", async () => {
    const empty = await consume(messages([]));
    expect(empty.kind === "error" && empty.error.kind).toBe("connection");
    const thrown = await consume(messages([{ type: "data", data: [1] }, { type: "data", data: [2] }], { throwAt: 1 }));
    expect(thrown.kind === "error" && thrown.error.kind).toBe("connection");
  });
});

describe("chat stream", () => {
  it("reads the /chat dict, thinking then answering then done", () => {
    const thinking = chatUpdateFrom([{ conversation_id: 3, status: "thinking", reasoning: "Hmm", answer: "", reasoning_s: null, message_id: null, usage: {} }]);
    expect(thinking).toMatchObject({ conversation_id: 3, status: "thinking", reasoning: "Hmm", answer: "" });
    const done = chatUpdateFrom([{ conversation_id: 3, status: "done", reasoning: "Hmm.", answer: "Blue.", reasoning_s: 1.234, message_id: 9, usage: { completion_tokens: 12 } }]);
    expect(done).toMatchObject({ status: "done", answer: "Blue.", message_id: 9, cached: false });
    expect(chatUpdateFrom([UNCHANGED])).toBeNull();
    expect(chatUpdateFrom([null])).toBeNull();
  });

  it("labels the thinking: live timer while pending, duration after", () => {
    expect(thinkingLabel("waiting", null)).toBe("Waiting for the model…");
    expect(thinkingLabel("loading", null)).toBe("Loading the model…");
    expect(thinkingLabel("thinking", null)).toBe("Thinking…");
    expect(thinkingLabel("thinking", null, 3.7)).toBe("Thinking… 3 s");
    expect(thinkingLabel("answering", 1.234)).toBe("Thought for 1.2 s");
    expect(thinkingLabel("done", 42.4)).toBe("Thought for 42 s");
    expect(thinkingLabel("cancelled", null)).toBe("Thinking (stopped)");
  });
});
