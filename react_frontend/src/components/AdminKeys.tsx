import { useCallback, useEffect, useState } from "react";
import { Button } from "@/components/ui/button";
import { AdminCard, AdminForm, AdminInput, AdminTable, useAction } from "@/components/AdminCommon";
import { revokeUserKey, userKeys } from "@/lib/admin";
import type { ApiKey } from "@/lib/account";
import { formatWhen } from "@/lib/format";

/** A user whose keys the Users section asked to see (a fresh object each time, so asking again shows them again). */
export interface KeysAsked {
  user: string;
}

/** One user's API keys (their first characters only: never the key) and Revoke, which stops a key at once on every
 * replica. `chosen` comes from the Users section's key count; `onChange` tells it that a count changed. */
export function AdminKeys({ root, chosen, onChange }: { root: string; chosen: KeysAsked | null; onChange?: () => void }) {
  const [user, setUser] = useState(chosen?.user ?? "");
  const [shown, setShown] = useState<{ user: string; keys: ApiKey[] } | null>(null);
  const action = useAction(useCallback(() => undefined, []));

  const show = (name: string) =>
    void action.act(async () => {
      setShown({ user: name, keys: await userKeys(root, name) });
    });
  useEffect(() => {
    if (!chosen) return;
    setUser(chosen.user);
    show(chosen.user);
  }, [chosen]);

  function revoke(owner: string, key: string) {
    if (!window.confirm(`Revoke ${owner}'s API key ${key}? Programs using it get 401 from now on.`)) return;
    void action.act(async () => {
      await revokeUserKey(root, owner, key);
      setShown({ user: owner, keys: await userKeys(root, owner) });
      onChange?.();
      return `Revoked ${owner}'s API key ${key}.`;
    });
  }

  return (
    <AdminCard title="API keys" description="A user's keys for the APIs, by name and first characters. Revoking one stops it at once." action={action} saidId="admin-keys-said">
      <AdminForm onSubmit={() => show(user.trim())}>
        <AdminInput id="admin-keys-user" label="Keys of" value={user} maxLength={64} onChange={setUser} />
        <Button type="submit" variant="outline" disabled={action.busy || !user.trim()}>
          Show keys
        </Button>
      </AdminForm>
      {shown ? (
        <AdminTable
          testId="admin-keys"
          headers={["Name", "Starts with", "Created", "Last used", ""]}
          rows={shown.keys}
          rowKey={(k) => k.name}
          empty={`${shown.user} has no API keys.`}
          cells={(k) => [
            <span className="font-medium">{k.name}</span>,
            <code className="text-xs">{k.prefix}</code>,
            formatWhen(k.created_at),
            k.last_used_at ? formatWhen(k.last_used_at) : "never",
            <Button size="sm" variant="destructive" disabled={action.busy} onClick={() => revoke(shown.user, k.name)}>
              Revoke <span className="sr-only">{k.name}</span>
            </Button>,
          ]}
        />
      ) : null}
    </AdminCard>
  );
}
