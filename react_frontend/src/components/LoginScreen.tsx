import { useState, type FormEvent } from "react";
import { Loader2, LogIn } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { ErrorAlert } from "@/components/ErrorAlert";
import { Field } from "@/components/Field";
import { errorFromException, type AppError } from "@/lib/errors";
import { login } from "@/lib/gradio";

export function LoginScreen({ root, message, onLoggedIn }: { root: string; message: string | null; onLoggedIn: () => void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<AppError | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(root, username.trim(), password);
      onLoggedIn();
    } catch (err) {
      setError(errorFromException(err));
      setBusy(false);
    }
  }

  return (
    <div className="flex min-h-[70vh] items-center justify-center p-4">
      <Card className="w-full max-w-sm">
        <CardHeader>
          <CardTitle className="text-xl">Log in to Atelier</CardTitle>
          <CardDescription>{message ?? "This Atelier asks for an account."}</CardDescription>
        </CardHeader>
        <CardContent>
          <form className="grid gap-4" onSubmit={submit} data-testid="login-form">
            <Field id="login-username" label="User name">
              <Input id="login-username" name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required autoFocus />
            </Field>
            <Field id="login-password" label="Password">
              <Input id="login-password" name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
            </Field>
            <ErrorAlert error={error} />
            <Button type="submit" disabled={busy || !username || !password}>
              {busy ? <Loader2 className="animate-spin" /> : <LogIn />}
              Log in
            </Button>
          </form>
        </CardContent>
      </Card>
    </div>
  );
}
