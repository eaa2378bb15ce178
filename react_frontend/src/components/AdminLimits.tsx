import { useCallback, useEffect, useState } from "react";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { ErrorAlert } from "@/components/ErrorAlert";
import { AdminTable, useAction } from "@/components/AdminCommon";
import { allLimits, clearLimits, LIMIT_FIELDS, setLimits, userLimits, type LimitChange, type LimitField, type Limits, type UserLimits } from "@/lib/admin";
import { errorFromException } from "@/lib/errors";

const LABELS: Record<LimitField, string> = {
  image_jobs: "Image jobs",
  chat_messages: "Chat messages",
  uploads: "Uploads",
  reads: "Reads",
  queue_quota: "Queue quota",
};

type Form = Record<LimitField, string>;
const EMPTY: Form = { image_jobs: "", chat_messages: "", uploads: "", reads: "", queue_quota: "" };

/** The form's fields as a change: an empty field goes back to the server's setting. */
export function limitChange(form: Form): LimitChange {
  const change: LimitChange = {};
  for (const field of LIMIT_FIELDS) {
    const text = form[field].trim();
    change[field] = text === "" ? null : field === "queue_quota" && /^\d+$/.test(text) ? Number(text) : text;
  }
  return change;
}

function formOf(limits: UserLimits): Form {
  const form = { ...EMPTY };
  for (const field of limits.overridden) form[field] = String(limits[field]);
  return form;
}

/** One user's own limits (rates such as 10/minute, and the queue quota), and every user who has some. */
export function AdminLimits({ root }: { root: string }) {
  const [overview, setOverview] = useState<{ defaults: Limits; users: UserLimits[] } | null>(null);
  const [user, setUser] = useState("");
  const [form, setForm] = useState<Form>(EMPTY);
  const refresh = useCallback(() => {
    allLimits(root).then(setOverview, (err) => action.setError(errorFromException(err)));
  }, [root]);
  const action = useAction(refresh);
  useEffect(() => refresh(), [refresh]);

  const show = (name: string) =>
    void action.act(async () => {
      setUser(name);
      setForm(formOf(await userLimits(root, name)));
    });

  return (
    <Card>
      <CardHeader>
        <CardTitle>Limits</CardTitle>
        <CardDescription>
          A rate is written like 10/minute or 100/hour; an empty field keeps the server's setting
          {overview ? ` (${LIMIT_FIELDS.map((f) => `${LABELS[f].toLowerCase()} ${overview.defaults[f]}`).join(", ")})` : ""}. Applied on every replica within a second.
        </CardDescription>
      </CardHeader>
      <CardContent className="grid gap-3">
        <ErrorAlert error={action.error} onDismiss={() => action.setError(null)} />
        <form
          className="flex flex-wrap items-end gap-2"
          onSubmit={(event) => {
            event.preventDefault();
            show(user.trim());
          }}
        >
          <div className="grid gap-1">
            <Label htmlFor="admin-limits-user">User</Label>
            <Input id="admin-limits-user" value={user} maxLength={64} onChange={(e) => setUser(e.target.value)} />
          </div>
          <Button type="submit" variant="outline" disabled={action.busy || !user.trim()}>
            Show
          </Button>
        </form>
        <form
          className="flex flex-wrap items-end gap-2"
          onSubmit={(event) => {
            event.preventDefault();
            void action.act(async () => {
              setForm(formOf(await setLimits(root, user.trim(), limitChange(form))));
              return `Saved the limits of ${user.trim()}.`;
            });
          }}
        >
          {LIMIT_FIELDS.map((field) => (
            <div key={field} className="grid gap-1">
              <Label htmlFor={`admin-limit-${field}`}>{LABELS[field]}</Label>
              <Input
                id={`admin-limit-${field}`}
                className="w-32"
                value={form[field]}
                placeholder={overview ? String(overview.defaults[field]) : ""}
                onChange={(e) => setForm({ ...form, [field]: e.target.value })}
              />
            </div>
          ))}
          <Button type="submit" disabled={action.busy || !user.trim()}>
            Save limits
          </Button>
          <Button
            type="button"
            variant="outline"
            disabled={action.busy || !user.trim()}
            onClick={() =>
              void action.act(async () => {
                setForm(formOf(await clearLimits(root, user.trim())));
                return `${user.trim()} is back on the defaults.`;
              })
            }
          >
            Back to the defaults
          </Button>
        </form>
        {action.said ? (
          <p className="text-sm" role="status">
            {action.said}
          </p>
        ) : null}
        <AdminTable
          testId="admin-limits"
          headers={["User", ...LIMIT_FIELDS.map((f) => LABELS[f])]}
          rows={overview?.users ?? []}
          rowKey={(u) => u.user}
          empty="Everyone has the server's limits."
          cells={(u) => [
            <button type="button" className="font-medium underline-offset-2 hover:underline" onClick={() => show(u.user)}>
              {u.user}
            </button>,
            ...LIMIT_FIELDS.map((f) => (u.overridden.includes(f) ? <strong>{u[f]}</strong> : <span className="text-muted-foreground">{u[f]}</span>)),
          ]}
        />
      </CardContent>
    </Card>
  );
}
