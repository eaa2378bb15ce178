import { fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { activeFilters, HistoryFilters } from "./HistoryFilters";

const FACETS = { models: ["tiny-sd"], samplers: ["Euler"], modes: ["txt2img"], sizes: ["64x64"] };

describe("HistoryFilters", () => {
  it("applies the filters set in the form (the user's own choices), and clears them all", () => {
    const onApply = vi.fn();
    const collections = [{ collection_id: 3, name: "Birds", created_at: "", updated_at: "", jobs: 2, cover_file_id: null }];
    const { rerender } = render(<HistoryFilters query={{ q: "cat", favourite: false }} facets={FACETS} collections={collections} onApply={onApply} />);
    expect(screen.queryByTestId("history-filters-clear")).toBeNull();
    fireEvent.click(screen.getByTestId("history-filters-toggle"));
    fireEvent.change(screen.getByTestId("filter-from"), { target: { value: "2026-12-01" } });
    fireEvent.change(screen.getByTestId("filter-model"), { target: { value: "tiny-sd" } });
    fireEvent.change(screen.getByTestId("filter-mode"), { target: { value: "txt2img" } });
    fireEvent.change(screen.getByTestId("filter-size"), { target: { value: "64x64" } });
    fireEvent.change(screen.getByTestId("filter-collection"), { target: { value: "3" } });
    fireEvent.click(screen.getByTestId("history-filters-apply"));
    const applied = { mode: "txt2img", filters: { from: "2026-12-01", model: "tiny-sd", size: "64x64", collection_id: 3 } };
    expect(onApply).toHaveBeenLastCalledWith(applied);

    rerender(<HistoryFilters query={{ q: "cat", favourite: false, ...applied } as never} facets={FACETS} collections={collections} onApply={onApply} />);
    expect(screen.getByTestId("history-filters-toggle").textContent).toBe("Filters (5)");
    fireEvent.click(screen.getByTestId("history-filters-clear"));
    expect(onApply).toHaveBeenLastCalledWith({ mode: "", filters: {} });
  });

  it("counts the two days as one filter, and the size as one", () => {
    expect(activeFilters({ filters: { from: "2026-12-01", to: "2026-12-02", size: "64x64" } })).toBe(2);
    expect(activeFilters({ mode: "inpaint", filters: { to: "2026-12-02" } })).toBe(2);
    expect(activeFilters({})).toBe(0);
  });
});
