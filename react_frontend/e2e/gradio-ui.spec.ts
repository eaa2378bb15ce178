import { expect, keepScreenshot, test, type Page } from "./fixtures";

async function setSlider(page: Page, name: string, value: number) {
  const box = page.getByRole("spinbutton", { name: `number input for ${name}` });
  await box.fill(String(value));
  await box.press("Enter");
}

test("the Gradio UI at / generates an image and chats", async ({ page }) => {
  await page.goto("/");
  // Gradio renders a tab's components when the tab is first shown.
  for (const id of ["#image-prompt textarea", "#image-generate", "#image-progress"]) {
    await expect(page.locator(id), id).toHaveCount(1);
  }
  await page.locator("#image-prompt textarea").fill("a fox in the snow");
  await setSlider(page, "Width", 64);
  await setSlider(page, "Height", 64);
  await setSlider(page, "Steps", 4);
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-progress")).toContainText(/done in [\d.]+ s/, { timeout: 60_000 });
  await expect(page.locator("#image-result img").first()).toBeVisible();
  await keepScreenshot(page, "gradio-image");

  await page.getByRole("tab", { name: "Chat" }).click();
  for (const id of ["#chat-message textarea", "#chat-send", "#chat-status", "#chatbot"]) {
    await expect(page.locator(id), id).toHaveCount(1);
  }
  await page.locator("#chat-message textarea").fill("hello");
  await page.locator("#chat-send").click();
  await expect(page.locator("#chat-status")).toContainText(/Done in [\d.]+ s/, { timeout: 60_000 });
  await expect(page.locator("#chatbot")).toContainText("hello");
  await expect(page.locator("#chatbot")).toContainText("Thought");
  await keepScreenshot(page, "gradio-chat");
});

test("in the Gradio chat, typed text is sent with Enter, and Shift+Enter breaks the line", async ({ page }) => {
  await page.goto("/");
  await page.getByRole("tab", { name: "Chat" }).click();
  const box = page.locator("#chat-message textarea");
  await expect(box).toHaveCount(1);
  // Typed key by key, as a person would: focus the box, type, Shift+Enter, type on, Enter.
  await box.click();
  await page.keyboard.type("first line");
  await page.keyboard.press("Shift+Enter");
  await page.keyboard.type("second line");
  await expect(box).toHaveValue("first line\nsecond line");
  await expect(page.locator("#chat-status")).toHaveText("");  // Shift+Enter sent nothing
  await page.keyboard.press("Enter");
  await expect(page.locator("#chat-status")).toContainText(/Done in [\d.]+ s/, { timeout: 60_000 });
  // One turn, with both lines; the box is empty again (Enter added no line break to it).
  const sent = page.locator('#chatbot [data-testid="user"]');
  await expect(sent).toHaveCount(1);
  await expect(sent).toContainText("first line");
  await expect(sent).toContainText("second line");
  await expect(box).toHaveValue("");
  await keepScreenshot(page, "gradio-chat-enter");
});
