import { useCallback, useEffect, useState } from "react";
import { Button } from "@/components/ui/button";
import { AdminCard, AdminForm, AdminInput, AdminTable, useAction } from "@/components/AdminCommon";
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
    <AdminCard
      title="Limits"
      description={
        <>
          A rate is written like 10/minute or 100/hour; an empty field keeps the server's setting
          {overview ? ` (${LIMIT_FIELDS.map((f) => `${LABELS[f].toLowerCase()} ${overview.defaults[f]}`).join(", ")})` : ""}. Applied on every replica within a second.
        </>
      }
      action={action}
    >
        <AdminForm onSubmit={() => show(user.trim())}>
          <AdminInput id="admin-limits-user" label="User" value={user} maxLength={64} onChange={setUser} />
          <Button type="submit" variant="outline" disabled={action.busy || !user.trim()}>
            Show
          </Button>
        </AdminForm>
        <AdminForm
          onSubmit={() =>
            void action.act(async () => {
              setForm(formOf(await setLimits(root, user.trim(), limitChange(form))));
              return `Saved the limits of ${user.trim()}.`;
            })
          }
        >
          {LIMIT_FIELDS.map((field) => (
            <AdminInput
              key={field}
              id={`admin-limit-${field}`}
              label={LABELS[field]}
              className="w-32"
              value={form[field]}
              placeholder={overview ? String(overview.defaults[field]) : ""}
              onChange={(value) => setForm({ ...form, [field]: value })}
            />
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
        </AdminForm>
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
    </AdminCard>
  );
}
