import { useCallback, useEffect, useState } from "react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { AdminCard, AdminTable, RefreshButton, useAction, usePolling } from "@/components/AdminCommon";
import { listModels, MODEL_ACTIONS, modelAction, type ModelAction, type ModelStatus } from "@/lib/admin";
import { errorFromException } from "@/lib/errors";
import { formatSeconds } from "@/lib/format";

/** While a model loads, its state is asked again this often, until it is ready (or failed). */
export const LOADING_POLL_MS = 1_500;

const LABELS: Record<ModelAction, string> = { load: "Load", offload: "Offload", unload: "Unload" };

/** Which actions the server can do in a state: load what is not in memory; offload or unload a ready, idle model. */
export function possible(action: ModelAction, state: string): boolean {
  if (action === "load") return state !== "ready" && state !== "loading";
  return state === "ready";
}

function stateBadge(state: string) {
  const variant = state === "ready" ? "secondary" : state === "failed" ? "destructive" : "outline";
  return <Badge variant={variant}>{state}</Badge>;
}

/** The models of this replica: their state, and load, offload (to CPU memory) or unload one now. */
export function AdminModels({ root }: { root: string }) {
  const [models, setModels] = useState<{ replica: string; models: ModelStatus[] } | null>(null);
  const refresh = useCallback(() => {
    listModels(root).then(setModels, (err) => action.setError(errorFromException(err)));
  }, [root]);
  const action = useAction(refresh);
  useEffect(() => refresh(), [refresh]);
  const loading = models?.models.some((m) => m.state === "loading") ?? false;
  usePolling(refresh, loading ? LOADING_POLL_MS : null);

  const act = (model: ModelStatus, what: ModelAction) =>
    void action.act(async () => {
      const after = await modelAction(root, model.kind, what);
      return `Asked the ${model.kind} model to ${what}: it is ${after.state}.`;
    });

  return (
    <AdminCard
      title="Models"
      description={`The models${models?.replica ? ` of replica ${models.replica}` : ""}. Offload parks an idle model's weights in CPU memory; unload frees them; load starts loading in the background. A model in use cannot be offloaded or unloaded.`}
      action={action}
      saidId="admin-models-said"
      aside={<RefreshButton label="Refresh the models" onClick={refresh} />}
    >
      <AdminTable
        testId="admin-models"
        headers={["Kind", "Model", "Backend", "State", "Since", ""]}
        rows={models?.models ?? []}
        rowKey={(m) => m.kind}
        empty="This server has no models."
        cells={(m) => [
          <span className="font-medium">{m.kind}</span>,
          m.model,
          m.backend,
          <span className="grid gap-0.5" data-testid={`model-state-${m.kind}`} data-state={m.state}>
            {stateBadge(m.state)}
            {m.state === "loading" && m.phase ? <span className="text-xs text-muted-foreground">{m.phase}</span> : null}
            {m.reason && m.state === "failed" ? <span className="text-xs text-destructive">{m.reason}</span> : null}
          </span>,
          formatSeconds(m.seconds_in_state),
          <span className="flex flex-wrap gap-1">
            {MODEL_ACTIONS.map((what) => (
              <Button key={what} size="sm" variant="outline" disabled={action.busy || !possible(what, m.state)} onClick={() => act(m, what)}>
                {LABELS[what]} <span className="sr-only">{`the ${m.kind} model`}</span>
              </Button>
            ))}
          </span>,
        ]}
      />
    </AdminCard>
  );
}
