import { useCallback, useEffect, useState } from "react";
import { Trash2, UserPlus } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { AdminCard, AdminForm, AdminInput, AdminTable, RefreshButton, useAction } from "@/components/AdminCommon";
import { changeUser, createUser, deleteUser, listUsers, type AdminUser } from "@/lib/admin";
import { errorFromException } from "@/lib/errors";
import { formatWhen } from "@/lib/format";

/** The accounts: create one, disable or enable, grant or take back admin, reset a password, delete with their data. */
export function AdminUsers({ root, me, onShowKeys, changed = 0 }: {
  root: string;
  me: string | null;
  /** Show a user's keys (the API keys section). */
  onShowKeys?: (user: string) => void;
  /** Bumped when another section changed what this one lists (a key revoked): it lists the users again. */
  changed?: number;
}) {
  const [users, setUsers] = useState<AdminUser[]>([]);
  const [form, setForm] = useState({ name: "", password: "", admin: false });
  const refresh = useCallback(() => {
    listUsers(root).then(setUsers, (err) => action.setError(errorFromException(err)));
  }, [root]);
  const action = useAction(refresh);
  useEffect(() => refresh(), [refresh, changed]);

  const change = (user: string, what: Parameters<typeof changeUser>[2]) =>
    void action.act(async () => (await changeUser(root, user, what)).join("; "));

  function resetPassword(user: string) {
    const password = window.prompt(`A new password for ${user} (at least 8 characters):`);
    if (password !== null) change(user, { password });
  }

  function remove(user: string) {
    if (!window.confirm(`Delete ${user} with their images, conversations, limits and keys? This cannot be undone.`)) return;
    void action.act(async () => {
      await deleteUser(root, user);
      return `Deleted ${user}.`;
    });
  }

  return (
    <AdminCard
      title="Users"
      description="Disabling ends the user's sessions and stops their jobs. You cannot disable, demote or delete yourself."
      action={action}
      saidId="admin-said"
      aside={<RefreshButton label="Refresh users" onClick={refresh} />}
    >
        <AdminTable
          testId="admin-users"
          headers={["Name", "Role", "Created", "Keys", ""]}
          rows={users}
          rowKey={(u) => u.name}
          empty="No accounts."
          cells={(u) => [
            <span className="font-medium">{u.name}</span>,
            <span className="flex gap-1">
              {u.admin ? <Badge>admin</Badge> : null}
              {u.disabled ? <Badge variant="destructive">disabled</Badge> : null}
              {u.limits_overridden ? <Badge variant="outline">own limits</Badge> : null}
            </span>,
            formatWhen(u.created_at),
            u.keys && onShowKeys ? (
              <button type="button" className="underline-offset-2 hover:underline" onClick={() => onShowKeys(u.name)}>
                {u.keys} <span className="sr-only">{`API keys of ${u.name}`}</span>
              </button>
            ) : (
              (u.keys ?? "")
            ),
            <span className="flex flex-wrap gap-1">
              <Button size="sm" variant="outline" disabled={action.busy || u.name === me} onClick={() => change(u.name, { disabled: !u.disabled })}>
                {u.disabled ? "Enable" : "Disable"} <span className="sr-only">{u.name}</span>
              </Button>
              <Button size="sm" variant="outline" disabled={action.busy || u.name === me} onClick={() => change(u.name, { admin: !u.admin })}>
                {u.admin ? "Take back admin" : "Make admin"} <span className="sr-only">{u.name}</span>
              </Button>
              <Button size="sm" variant="outline" disabled={action.busy} onClick={() => resetPassword(u.name)}>
                Reset password <span className="sr-only">{u.name}</span>
              </Button>
              <Button size="sm" variant="destructive" disabled={action.busy || u.name === me} aria-label={`Delete ${u.name}`} onClick={() => remove(u.name)}>
                <Trash2 />
              </Button>
            </span>,
          ]}
        />
        <AdminForm
          onSubmit={() =>
            void action.act(async () => {
              await createUser(root, form.name, form.password, form.admin);
              setForm({ name: "", password: "", admin: false });
              return `Created ${form.name.trim()}.`;
            })
          }
        >
          <AdminInput id="admin-new-name" label="New user" value={form.name} maxLength={64} onChange={(name) => setForm({ ...form, name })} />
          <AdminInput id="admin-new-password" label="Password" type="password" value={form.password} onChange={(password) => setForm({ ...form, password })} />
          <label className="flex items-center gap-1 pb-2 text-sm">
            <input type="checkbox" checked={form.admin} onChange={(e) => setForm({ ...form, admin: e.target.checked })} /> Admin
          </label>
          <Button type="submit" disabled={action.busy}>
            <UserPlus /> Create
          </Button>
        </AdminForm>
    </AdminCard>
  );
}
