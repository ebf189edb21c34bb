"""Cases (事件/案件): the closed loop of GB/T 30428 — intake, 立案, 派遣, 处置, 核查, 结案, 评价."""
