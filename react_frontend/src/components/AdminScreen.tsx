import { AdminLimits } from "@/components/AdminLimits";
import { AdminRequests } from "@/components/AdminRequests";
import { AdminUsage } from "@/components/AdminUsage";
import { AdminUsers } from "@/components/AdminUsers";

/** The admin panel: users, their limits, usage per user and the request log (shown to admins only; the server
 * refuses every admin route to anyone else). */
export function AdminScreen({ root, me }: { root: string; me: string | null }) {
  return (
    <div className="grid gap-4" data-testid="admin-screen">
      <AdminUsers root={root} me={me} />
      <AdminLimits root={root} />
      <AdminUsage root={root} />
      <AdminRequests root={root} />
    </div>
  );
}
