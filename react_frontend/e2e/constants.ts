/** Ports and the account the e2e servers use (shared by playwright.config.ts and the tests). */
export const PORT = Number(process.env.ATELIER_E2E_PORT ?? 7891);
export const AUTH_PORT = Number(process.env.ATELIER_E2E_AUTH_PORT ?? 7892);
/** The app with remote backends, and the AUTOMATIC1111 and OpenAI-compatible stand-ins it drives. */
export const REMOTE_PORT = Number(process.env.ATELIER_E2E_REMOTE_PORT ?? 7893);
export const A1111_PORT = Number(process.env.ATELIER_E2E_A1111_PORT ?? 7894);
export const OPENAI_PORT = Number(process.env.ATELIER_E2E_OPENAI_PORT ?? 7895);
/** The built client served by `vite preview` on a port of its own: another origin, which the app at PORT trusts. */
export const ELSEWHERE_PORT = Number(process.env.ATELIER_E2E_ELSEWHERE_PORT ?? 7897);
export const E2E_USER = "alice";
export const E2E_PASSWORD = "pass-word-1";
