/** Ports and the account the e2e servers use (shared by playwright.config.ts and the tests). */
export const PORT = Number(process.env.ATELIER_E2E_PORT ?? 7891);
export const AUTH_PORT = Number(process.env.ATELIER_E2E_AUTH_PORT ?? 7892);
export const E2E_USER = "alice";
export const E2E_PASSWORD = "pass-word-1";
