import { useState } from "react";
import { AdminKeys, type KeysAsked } from "@/components/AdminKeys";
import { AdminLimits } from "@/components/AdminLimits";
import { AdminModels } from "@/components/AdminModels";
import { AdminQueue } from "@/components/AdminQueue";
import { AdminRequests } from "@/components/AdminRequests";
import { AdminUsage } from "@/components/AdminUsage";
import { AdminUsers } from "@/components/AdminUsers";

/** The admin panel: users and their API keys, the live queue, the models, limits, usage per user and the request log
 * (shown to admins only; the server refuses every admin route to anyone else). */
export function AdminScreen({ root, me }: { root: string; me: string | null }) {
  const [keysOf, setKeysOf] = useState<KeysAsked | null>(null);
  const [keysChanged, setKeysChanged] = useState(0);
  return (
    <div className="grid gap-4" data-testid="admin-screen">
      <AdminUsers root={root} me={me} onShowKeys={(user) => setKeysOf({ user })} changed={keysChanged} />
      <AdminKeys root={root} chosen={keysOf} onChange={() => setKeysChanged((n) => n + 1)} />
      <AdminQueue root={root} />
      <AdminModels root={root} />
      <AdminLimits root={root} />
      <AdminUsage root={root} />
      <AdminRequests root={root} />
    </div>
  );
}
