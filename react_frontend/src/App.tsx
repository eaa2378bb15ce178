import { useCallback, useEffect, useRef, useState } from "react";
import { FileSearch, History, Image as ImageIcon, KeyRound, Loader2, LogOut, MessageSquare, RefreshCw, ShieldCheck } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Tabs, TabsContent, TabsList, TabsTrigger } from "@/components/ui/tabs";
import { AccountScreen } from "@/components/AccountScreen";
import { AdminScreen } from "@/components/AdminScreen";
import { UsageCard } from "@/components/UsageCard";
import { ChatScreen } from "@/components/ChatScreen";
import { reuseControlUnits } from "@/components/ControlNetPanel";
import { ErrorAlert } from "@/components/ErrorAlert";
import { HistoryScreen } from "@/components/HistoryScreen";
import { ImageScreen } from "@/components/ImageScreen";
import type { InitImage } from "@/components/InitImageInput";
import { LoginScreen } from "@/components/LoginScreen";
import { PngInfoScreen } from "@/components/PngInfoScreen";
import { ThemeToggle } from "@/components/ThemeToggle";
import { errorFromException, type AppError } from "@/lib/errors";
import { checkAccess, connect, logout, resetConnection, resolveServerUrl, type AtelierConnection } from "@/lib/gradio";
import { catalogFrom, catalogUnsettled, choicesFrom, defaultsFrom, fieldsInUse, NO_CHOICES, noteTouched, withServerDefaults } from "@/lib/api";
import { whoAmI } from "@/lib/admin";
import { firstUnits, type ControlUnit } from "@/lib/controlnet";
import { useTheme } from "@/lib/theme";
import { DEFAULT_IMAGE_SETTINGS, type ChoiceLists, type ImageSettings, type Mode, type ModelCatalog } from "@/lib/types";

type State =
  | { step: "checking" }
  | { step: "login"; message: string | null }
  | { step: "ready"; conn: AtelierConnection; username: string | null }
  | { step: "error"; error: AppError };

type Screen = "image" | "chat" | "history" | "png-info" | "account" | "admin";

const NO_CATALOG: ModelCatalog = { models: [], vaes: [], upscalers: [] };

const root = resolveServerUrl();

export default function App() {
  const { theme, toggle } = useTheme();
  const [state, setState] = useState<State>({ step: "checking" });
  const [screen, setScreen] = useState<Screen>("image");
  const [settings, setSettings] = useState<ImageSettings>(DEFAULT_IMAGE_SETTINGS);
  // The fields the user (or a Reuse / Send) set: the server's defaults, when they arrive, leave those alone.
  const touched = useRef(new Set<keyof ImageSettings>());
  const [mode, setMode] = useState<Mode>("txt2img");
  const [initImage, setInitImageState] = useState<InitImage | null>(null);
  const [catalog, setCatalog] = useState<ModelCatalog>(NO_CATALOG);
  const [choices, setChoices] = useState<ChoiceLists>(NO_CHOICES);
  // ControlNet units (issue 24): here, so that History's Reuse and PNG Info's Send fill them in.
  const [controlUnits, setControlUnits] = useState<ControlUnit[]>(firstUnits);
  const [historyKey, setHistoryKey] = useState(0);
  const [openRequest, setOpenRequest] = useState<{ id: number; nonce: number } | null>(null);

  const start = useCallback(async () => {
    setState({ step: "checking" });
    try {
      const access = await checkAccess(root);
      if (access.loginRequired) {
        setState({ step: "login", message: access.message });
        return;
      }
      const conn = await connect(root);
      setState({ step: "ready", conn, username: access.username });
    } catch (err) {
      const error = errorFromException(err);
      if (error.kind === "auth") setState({ step: "login", message: null });
      else setState({ step: "error", error });
    }
  }, []);

  useEffect(() => {
    void start();
  }, [start]);

  // What the server has to offer: checkpoints, VAEs and upscalers (/models), and the choice lists (/choices), which
  // the client keeps no copy of; without them (an older server) each field offers only its current value.
  const conn = state.step === "ready" ? state.conn : null;
  useEffect(() => {
    if (!conn) return;
    let live = true;
    conn.call<unknown>("/models", {}).then(
      (answer) => live && setCatalog(catalogFrom(answer)),
      () => live && setCatalog(NO_CATALOG),
    );
    conn.call<unknown>("/choices", {}).then(
      (answer) => {
        if (!live) return;
        setChoices(choicesFrom(answer));
        // The form starts from what suits the server's model (its profile), as the Gradio UI's does.
        const inUse = fieldsInUse(touched.current, document.activeElement?.id);
        setSettings((previous) => withServerDefaults(previous, defaultsFrom(answer), inUse));
      },
      () => live && setChoices(NO_CHOICES),
    );
    return () => {
      live = false;
    };
  }, [conn]);

  // The admin panel is shown to admins only (issue 26); the server refuses its routes to anyone else regardless.
  const [admin, setAdmin] = useState(false);
  useEffect(() => {
    if (!conn) return;
    let live = true;
    whoAmI(root).then(
      (me) => live && setAdmin(me.admin),
      () => live && setAdmin(false),
    );
    return () => {
      live = false;
    };
  }, [conn]);

  const setInitImage = useCallback((image: InitImage | null) => {
    setInitImageState((previous) => {
      if (previous && previous.url !== image?.url) URL.revokeObjectURL(previous.url);
      return image;
    });
  }, []);

  const bumpHistory = useCallback(() => setHistoryKey((k) => k + 1), []);
  // After an image job, /models again while it lacks what a first job builds (the tiny profile's checkpoints and
  // their families, which the Checkpoint and Refiner pickers need); not after every job (reads count against limits).
  const afterImageJob = useCallback(() => {
    bumpHistory();
    if (conn && catalogUnsettled(catalog)) conn.call<unknown>("/models", {}).then((answer) => setCatalog(catalogFrom(answer)), () => undefined);
  }, [bumpHistory, conn, catalog]);
  const updateSettings = useCallback(
    (update: (previous: ImageSettings) => ImageSettings) =>
      setSettings((previous) => noteTouched(touched.current, previous, update(previous))),
    [],
  );

  return (
    <Tabs value={screen} onValueChange={(v) => setScreen(v as Screen)} className="min-h-screen gap-0">
      <header className="sticky top-0 z-10 w-full border-b bg-background/90 backdrop-blur">
        <div className="mx-auto flex max-w-7xl flex-wrap items-center gap-x-4 gap-y-2 px-4 py-2">
          <a href={`${import.meta.env.BASE_URL}`} className="mr-2 text-lg font-semibold tracking-tight">
            Atelier
          </a>
          {state.step === "ready" ? (
            <div className="order-3 w-full sm:order-none sm:w-auto">
              <TabsList className="w-full sm:w-auto">
                <TabsTrigger value="image" data-testid="nav-image">
                  <ImageIcon /> Image
                </TabsTrigger>
                <TabsTrigger value="chat" data-testid="nav-chat">
                  <MessageSquare /> Chat
                </TabsTrigger>
                <TabsTrigger value="history" data-testid="nav-history">
                  <History /> History
                </TabsTrigger>
                <TabsTrigger value="png-info" data-testid="nav-png-info">
                  <FileSearch /> PNG Info
                </TabsTrigger>
                <TabsTrigger value="account" data-testid="nav-account">
                  <KeyRound /> Account
                </TabsTrigger>
                {admin ? (
                  <TabsTrigger value="admin" data-testid="nav-admin">
                    <ShieldCheck /> Admin
                  </TabsTrigger>
                ) : null}
              </TabsList>
            </div>
          ) : null}
          <div className="ml-auto flex items-center gap-1">
            <Button variant="link" size="sm" asChild className="text-muted-foreground">
              <a href={root}>Gradio UI</a>
            </Button>
            {state.step === "ready" && state.username ? (
              <span className="hidden text-sm text-muted-foreground sm:inline" data-testid="username">
                {state.username}
              </span>
            ) : null}
            {state.step === "ready" && state.username ? (
              <Button
                variant="ghost"
                size="icon"
                aria-label="Log out"
                title="Log out"
                onClick={() => void logout(root).then(() => setState({ step: "login", message: null }))}
              >
                <LogOut />
              </Button>
            ) : null}
            <ThemeToggle theme={theme} onToggle={toggle} />
          </div>
        </div>
      </header>

      <main className="mx-auto w-full max-w-7xl px-4 py-4">
        {state.step === "checking" ? (
          <div className="flex items-center justify-center gap-2 py-24 text-muted-foreground" data-testid="connecting">
            <Loader2 className="animate-spin" /> Connecting to Atelier…
          </div>
        ) : null}
        {state.step === "login" ? <LoginScreen root={root} message={state.message} onLoggedIn={() => void start()} /> : null}
        {state.step === "error" ? (
          <div className="mx-auto grid max-w-lg gap-3 py-16">
            <ErrorAlert error={state.error} />
            <Button
              onClick={() => {
                resetConnection();
                void start();
              }}
            >
              <RefreshCw /> Try again
            </Button>
          </div>
        ) : null}
        {state.step === "ready" ? (
          // Every screen stays mounted, so a job keeps streaming while you look at another one.
          <>
            <TabsContent value="image" forceMount className="data-[state=inactive]:hidden">
              <ImageScreen
                conn={state.conn}
                settings={settings}
                onSettings={updateSettings}
                mode={mode}
                onMode={setMode}
                initImage={initImage}
                onInitImage={setInitImage}
                catalog={catalog}
                choices={choices}
                controlUnits={controlUnits}
                onControlUnits={setControlUnits}
                onJobFinished={afterImageJob}
              />
            </TabsContent>
            <TabsContent value="chat" forceMount className="data-[state=inactive]:hidden">
              <ChatScreen conn={state.conn} openRequest={openRequest} onReplyFinished={bumpHistory} />
            </TabsContent>
            <TabsContent value="history" forceMount className="data-[state=inactive]:hidden">
              <HistoryScreen
                conn={state.conn}
                refreshKey={historyKey}
                onReuse={(reused, units) => {
                  updateSettings((s) => ({ ...s, ...reused }));
                  void reuseControlUnits(units, root, setControlUnits);
                  setScreen("image");
                }}
                onOpenConversation={(id) => {
                  setOpenRequest({ id, nonce: Date.now() });
                  setScreen("chat");
                }}
              />
            </TabsContent>
            <TabsContent value="png-info" forceMount className="data-[state=inactive]:hidden">
              <PngInfoScreen
                conn={state.conn}
                catalog={catalog}
                onSend={(target, sent, image, units) => {
                  // A PNG's settings replace those it names (hires fix off unless it used it); the rest stay.
                  updateSettings((s) => ({ ...s, ...sent }));
                  void reuseControlUnits(units ?? [], root, setControlUnits); // its units, or none

                  setMode(target);
                  if (target !== "txt2img") setInitImage({ ...image, url: URL.createObjectURL(image.file) });
                  setScreen("image");
                }}
              />
            </TabsContent>
            <TabsContent value="account" className="data-[state=inactive]:hidden">
              <AccountScreen root={root} username={state.username} refreshKey={historyKey} />
              {state.username ? (
                <div className="mt-4">
                  <UsageCard root={root} refreshKey={historyKey} />
                </div>
              ) : null}
            </TabsContent>
            {admin ? (
              <TabsContent value="admin" className="data-[state=inactive]:hidden">
                <AdminScreen root={root} me={state.username} />
              </TabsContent>
            ) : null}
          </>
        ) : null}
      </main>
    </Tabs>
  );
}
