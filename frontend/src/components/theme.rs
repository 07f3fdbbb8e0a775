//! The plots' colours, matching the page's dark theme in style.css.

use plotters::style::RGBColor;

pub const BACKGROUND: RGBColor = RGBColor(22, 27, 34);
pub const GRID: RGBColor = RGBColor(38, 44, 54);
pub const MUTED: RGBColor = RGBColor(139, 148, 158);
pub const ACCENT: RGBColor = RGBColor(88, 166, 255);
pub const UP: RGBColor = RGBColor(63, 185, 80);
pub const DOWN: RGBColor = RGBColor(248, 81, 73);
