// The shipped dashboard's panels, drawn by @grafana/ui from Prometheus' answers that bench/grafana_panels.py wrote
// into the page (window.__PANELS__), laid out by the dashboard's gridPos as Grafana's grid lays it out.
import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import {
  createTheme,
  dateTime,
  type DataFrame,
  type Field,
  FieldColorModeId,
  type FieldConfig,
  FieldType,
  getDisplayProcessor,
  reduceField,
  ReducerID,
  ThemeContext,
  type ThresholdsConfig,
  ThresholdsMode,
  type TimeRange,
} from "@grafana/data";
import {
  BigValue,
  BigValueColorMode,
  BigValueGraphMode,
  BigValueTextMode,
  GlobalStyles,
  PanelChrome,
  TimeSeries,
} from "@grafana/ui";

type Labels = Record<string, string>;
type Series = { metric: Labels; values: [number, string][] };
type Target = { refId: string; expr: string; legendFormat?: string };
type Panel = {
  id: number;
  type: string;
  title: string;
  description?: string;
  gridPos: { h: number; w: number; x: number; y: number };
  fieldConfig?: { defaults?: Record<string, any>; overrides?: any[] };
  options?: Record<string, any>;
  targets?: Target[];
};
type Answers = {
  board: { title: string; panels: Panel[] };
  from: number;
  to: number;
  step: number;
  results: Record<string, Series[]>;
};

declare global {
  interface Window {
    __PANELS__: Answers;
  }
}

// Grafana's grid: 24 columns, rows of 30 px, 8 px between panels.
const COLUMNS = 24;
const ROW_PX = 30;
const GAP_PX = 8;
const PAGE_PX = 1600;
const SIDE_PX = 16;
// Grafana's default thresholds (its JSON's null base is -Infinity in the code).
const THRESHOLDS: ThresholdsConfig = {
  mode: ThresholdsMode.Absolute,
  steps: [{ color: "green", value: -Infinity }, { color: "red", value: 80 }],
};
// The time series panel's own field defaults (Grafana's public/app/plugins/panel/timeseries), which a dashboard's
// "custom" block overrides.
const GRAPH_DEFAULTS = {
  drawStyle: "line", lineInterpolation: "linear", lineWidth: 1, fillOpacity: 0, gradientMode: "none",
  showPoints: "auto", pointSize: 5, spanNulls: false, axisPlacement: "auto", axisLabel: "",
  axisColorMode: "text", axisBorderShow: false, axisCenteredZero: false, scaleDistribution: { type: "linear" },
  barAlignment: 0, stacking: { mode: "none", group: "A" }, hideFrom: { legend: false, tooltip: false, viz: false },
  thresholdsStyle: { mode: "off" }, lineStyle: { fill: "solid" },
};

const theme = createTheme();
const data = window.__PANELS__;
const timeRange: TimeRange = {
  from: dateTime(data.from * 1000),
  to: dateTime(data.to * 1000),
  raw: { from: dateTime(data.from * 1000), to: dateTime(data.to * 1000) },
};

/** A series' name as Grafana's Prometheus data source gives it: the legend filled, else name{labels}, else expr. */
function seriesName(target: Target, metric: Labels): string {
  if (target.legendFormat) {
    return target.legendFormat.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, label: string) => metric[label] ?? "").trim();
  }
  const { __name__: name = "", ...rest } = metric;
  const labels = Object.entries(rest).map(([key, value]) => `${key}="${value}"`).join(", ");
  return labels || name ? `${name}{${labels}}` : target.expr;
}

/** One data frame per series, as Grafana's Prometheus data source makes them. */
function framesOf(panel: Panel): DataFrame[] {
  return (panel.targets ?? []).flatMap((target) =>
    (data.results[`${panel.id}/${target.refId}`] ?? []).map((series): DataFrame => {
      const times = series.values.map(([t]) => t * 1000);
      const values = series.values.map(([, v]) => (Number.isFinite(Number(v)) ? Number(v) : null));
      const name = seriesName(target, series.metric);
      return {
        refId: target.refId,
        name,
        length: times.length,
        fields: [
          { name: "Time", type: FieldType.time, config: { interval: data.step * 1000 }, values: times },
          { name: "Value", type: FieldType.number, labels: series.metric, config: { displayNameFromDS: name }, values },
        ],
      };
    }),
  );
}

/** The frames with the panel's field config on each value field (units, colours, thresholds, the time series
 * panel's defaults), a series index for the palette and display processors: what a panel receives from Grafana. */
function prepared(panel: Panel, graph: boolean): DataFrame[] {
  const given = { ...panel.fieldConfig?.defaults };
  if (given.thresholds) {
    // JSON's null base step is -Infinity in Grafana's code, as Grafana reads a dashboard.
    const steps = given.thresholds.steps.map((step: { value: number | null }) => ({ ...step, value: step.value ?? -Infinity }));
    given.thresholds = { ...given.thresholds, steps };
  }
  const defaults: FieldConfig = graph
    ? { color: { mode: FieldColorModeId.PaletteClassic }, thresholds: THRESHOLDS, ...given, custom: { ...GRAPH_DEFAULTS, ...given.custom } }
    : { color: { mode: FieldColorModeId.Thresholds }, thresholds: THRESHOLDS, ...given };
  const frames = framesOf(panel);
  const numbers = frames.flatMap((frame) => frame.fields).filter((field) => field.type === FieldType.number);
  // One range over the whole panel, as Grafana's applyFieldOverrides gives it (colour scales and gauges read it).
  const seen = numbers.flatMap((field) => field.values).filter((v): v is number => typeof v === "number");
  const range = { min: Math.min(...seen), max: Math.max(...seen), delta: Math.max(...seen) - Math.min(...seen) };
  numbers.forEach((field, seriesIndex) => {
    field.config = { ...defaults, ...field.config };
    field.state = { ...field.state, seriesIndex, range };
  });
  for (const field of frames.flatMap((frame) => frame.fields)) {
    field.display = getDisplayProcessor({ field, theme, timeZone: "utc" });
  }
  return frames;
}

function Graph({ panel, width, height }: { panel: Panel; width: number; height: number }) {
  const frames = prepared(panel, true);
  if (!frames.length) return <NoData width={width} height={height} />;
  const legend = { displayMode: "list", placement: "bottom", showLegend: true, calcs: [], ...panel.options?.legend };
  return (
    <TimeSeries frames={frames} width={width} height={height} timeRange={timeRange} timeZone="utc"
                legend={legend as any} options={panel.options} />
  );
}

function Stat({ panel, width, height }: { panel: Panel; width: number; height: number }) {
  const [frame] = prepared(panel, false);
  if (!frame) return <NoData width={width} height={height} />;
  const [time, field] = frame.fields as [Field, Field];
  const calc = (panel.options?.reduceOptions?.calcs?.[0] ?? ReducerID.lastNotNull) as ReducerID;
  const value = field.display!(reduceField({ field, reducers: [calc] })[calc]);
  return (
    <BigValue value={value} width={width} height={height} theme={theme}
              sparkline={panel.options?.graphMode === "none" ? undefined : { y: field, x: time, timeRange }}
              colorMode={(panel.options?.colorMode ?? "value") as BigValueColorMode}
              graphMode={(panel.options?.graphMode ?? "area") as BigValueGraphMode}
              textMode={(panel.options?.textMode ?? "auto") as BigValueTextMode} />
  );
}

function NoData({ width, height }: { width: number; height: number }) {
  return (
    <div style={{ width, height, display: "flex", alignItems: "center", justifyContent: "center",
                  color: theme.colors.text.secondary }}>No data</div>
  );
}

function Cell({ panel }: { panel: Panel }) {
  const column = (PAGE_PX - 2 * SIDE_PX - GAP_PX * (COLUMNS - 1)) / COLUMNS;
  const { x, y, w, h } = panel.gridPos;
  const box = { left: SIDE_PX + x * (column + GAP_PX), top: y * (ROW_PX + GAP_PX), width: w * column + (w - 1) * GAP_PX,
                height: h * ROW_PX + (h - 1) * GAP_PX };
  if (panel.type === "row") {
    return (
      <div style={{ position: "absolute", ...box, display: "flex", alignItems: "center", fontSize: 16,
                    fontWeight: 500, color: theme.colors.text.primary }}>⌄ {panel.title}</div>
    );
  }
  const Viz = panel.type === "stat" ? Stat : Graph;
  return (
    <div style={{ position: "absolute", ...box }}>
      <PanelChrome width={box.width} height={box.height} title={panel.title} description={panel.description || undefined}>
        {(width: number, height: number) => <Viz panel={panel} width={width} height={height} />}
      </PanelChrome>
    </div>
  );
}

function Board() {
  const [drawn, setDrawn] = useState(false);
  useEffect(() => {
    requestAnimationFrame(() => setDrawn(true));
  }, []);
  const bottom = Math.max(...data.board.panels.map((p) => p.gridPos.y + p.gridPos.h));
  const span = `${new Date(data.from * 1000).toISOString().slice(11, 19)} to ${new Date(data.to * 1000)
    .toISOString().slice(11, 19)} UTC`;
  return (
    <ThemeContext.Provider value={theme}>
      <GlobalStyles />
      <div style={{ background: theme.colors.background.canvas, width: PAGE_PX, padding: `12px 0 ${SIDE_PX}px` }}>
        <div style={{ padding: `0 ${SIDE_PX}px 12px`, color: theme.colors.text.primary, fontSize: 18 }}>
          {data.board.title}
          <span style={{ color: theme.colors.text.secondary, fontSize: 13, marginLeft: 16 }}>
            Replica: All · {span} · drawn by @grafana/ui from Prometheus&apos; answers (not the Grafana server)
          </span>
        </div>
        <div style={{ position: "relative", height: bottom * (ROW_PX + GAP_PX) }}>
          {data.board.panels.map((panel) => <Cell key={panel.id} panel={panel} />)}
        </div>
      </div>
      {drawn && <div id="drawn" />}
    </ThemeContext.Provider>
  );
}

createRoot(document.getElementById("root")!).render(<Board />);
