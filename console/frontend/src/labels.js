// zh-CN first, English available: key → [中文, English].
export const LABELS = {
  title: ["指挥中心工作台", "Command centre console"],
  login: ["登录", "Log in"], account: ["账号", "Account"], password: ["密码", "Password"],
  logout: ["退出", "Log out"], loginFailed: ["登录失败", "Login failed"],
  queue: ["工作台", "Queue"], map: ["一张图", "Map"], dashboard: ["统计考核", "Dashboard"],
  register: ["人口/房屋查询", "Register lookup"], broadcast: ["发布通知", "Broadcast"],
  audit: ["审计日志", "Audit trail"], detail: ["事件详情", "Case detail"],
  state: ["状态", "State"], category: ["类别", "Category"], light: ["亮灯", "Light"],
  overdue: ["超期", "Overdue"], area: ["区域", "Area"], department: ["部门", "Department"],
  assignedToMe: ["派给我的", "Assigned to me"], reportedFrom: ["上报起", "Reported from"],
  reportedTo: ["上报止", "Reported to"], text: ["关键词", "Text"], search: ["查询", "Search"],
  reset: ["重置", "Reset"], refresh: ["刷新", "Refresh"], export: ["导出 Excel", "Export .xlsx"],
  code: ["编号", "Code"], address: ["地址", "Address"], description: ["描述", "Description"],
  reportedAt: ["上报时间", "Reported"], dueAt: ["时限", "Due"], all: ["全部", "All"],
  red: ["红灯", "Red"], yellow: ["黄灯", "Yellow"], green: ["绿灯", "Green"], none: ["无时限", "No limit"],
  yes: ["是", "Yes"], no: ["否", "No"], selected: ["已选", "Selected"],
  bulkAccept: ["批量受理", "Accept"], bulkDispatch: ["批量派遣", "Dispatch"],
  bulkClose: ["批量结案", "Close"], bulkApprove: ["批量批准申请", "Approve requests"],
  results: ["处理结果", "Results"], ok: ["成功", "Done"], refused: ["未通过", "Refused"],
  timeline: ["流转记录", "Timeline"], duplicates: ["疑似重复", "Likely duplicates"],
  requests: ["待审申请", "Pending requests"], photos: ["照片", "Photos"], actions: ["操作", "Actions"],
  reporter: ["上报人", "Reporter"], attributes: ["附加信息", "Attributes"], location: ["位置", "Location"],
  stale: ["他人已先处理此事件", "Someone else acted first"],
  staleHelp: ["以下内容已变化，请在最新版本上重新操作。", "These changed; act again on the new version."],
  notAllowed: ["当前不能执行此操作", "This action is not possible now"],
  allowedNow: ["现在可执行", "Allowed now"], submit: ["提交", "Submit"], cancel: ["取消", "Cancel"],
  reason: ["原因", "Reason"], note: ["备注", "Note"], result: ["处置结果", "Result"],
  assignee: ["处置人", "Assignee"], extensionHours: ["延期工时(小时)", "Extension (hours)"],
  mergeInto: ["合并到", "Merge into"], rating: ["评分", "Rating"], comment: ["评价", "Comment"],
  suggested: ["建议", "suggested"], version: ["版本", "Version"], back: ["返回", "Back"], period: ["统计期间", "Period"],
  granularity: ["粒度", "Granularity"], day: ["日", "Day"], week: ["周", "Week"], month: ["月", "Month"],
  reported: ["上报", "Reported"], accepted: ["受理", "Accepted"], closed: ["结案", "Closed"],
  closureRate: ["结案率", "Closure rate"], onTimeRate: ["按期处置率", "On-time handling"],
  onTimeClosure: ["按期结案率", "On-time closure"], reworkRate: ["返工率", "Rework rate"],
  meanHours: ["平均处置时长(小时)", "Mean handling (h)"], satisfaction: ["满意率", "Satisfaction"],
  score: ["综合得分", "Score"], grade: ["综合评价", "Grade"], byCategory: ["按类别", "By category"],
  byDepartment: ["部门排名", "Departments"], byGrid: ["网格排名", "Grids"], trend: ["趋势", "Trend"],
  persons: ["人口", "People"], households: ["户", "Households"], buildings: ["楼栋", "Buildings"],
  name: ["姓名/名称", "Name"], idNumber: ["身份证号", "ID number"], phone: ["手机号", "Phone"],
  reveal: ["查看明文", "Reveal"], purposeCode: ["用途", "Purpose"], purpose: ["用途说明", "Purpose text"],
  profile: ["画像", "Profile"], titleField: ["标题", "Title"], level: ["级别", "Level"],
  content: ["内容", "Text"], link: ["链接", "Link"], send: ["发送", "Send"], sent: ["已发送", "Sent"],
  actor: ["操作人", "Actor"], action: ["动作", "Action"], objectType: ["对象类型", "Object type"],
  objectId: ["对象编号", "Object id"], since: ["起", "Since"], until: ["止", "Until"], at: ["时间", "Time"],
  openFullMap: ["在网格地图中打开", "Open the grid map"], upload: ["上传照片", "Upload photos"],
  noData: ["暂无数据", "No data"], total: ["合计", "Total"], keyboard: ["快捷键: ↑↓ 选择, Enter 打开, 空格 勾选, a 受理",
    "Keys: ↑↓ move, Enter open, Space select, a accept"],
};

export const ACTIONS = {
  report: ["上报", "Report"], join: ["附议", "Join"],
  accept: ["受理", "Accept"], reject: ["不予立案", "Reject"], merge: ["合并", "Merge"],
  dispatch: ["派遣", "Dispatch"], sign: ["签收", "Sign"], return: ["退回", "Return"],
  handle: ["处置反馈", "Handle"], verify: ["核查通过", "Verify"], reject_result: ["核查不通过", "Reject result"],
  close: ["结案", "Close"], evaluate: ["评价", "Evaluate"], reopen: ["重新办理", "Reopen"],
  request_extension: ["申请延期", "Request extension"], request_defer: ["申请缓办", "Request defer"],
  request_backlog: ["申请挂账", "Request backlog"], request_void: ["申请作废", "Request void"],
  approve: ["批准申请", "Approve"], refuse: ["驳回申请", "Refuse"], resume: ["恢复办理", "Resume"],
};

export const STATES = {
  reported: ["待受理", "Reported"], accepted: ["已受理", "Accepted"], rejected: ["不予立案", "Rejected"],
  merged: ["已合并", "Merged"], dispatched: ["已派遣", "Dispatched"], returned: ["已退回", "Returned"],
  in_progress: ["处置中", "In progress"], handled: ["已处置", "Handled"], verified: ["已核查", "Verified"],
  closed: ["已结案", "Closed"], evaluated: ["已评价", "Evaluated"], on_hold: ["挂起", "On hold"],
  voided: ["已作废", "Voided"],
};

// The fields each action's form asks for (the API's ActionSchema).
export const ACTION_FIELDS = {
  accept: ["note"], reject: ["reason"], merge: ["into_case_id", "note"],
  dispatch: ["department_id", "assignee_id", "note"], sign: ["note"], return: ["reason"],
  handle: ["result", "photo_ids"], verify: ["note"], reject_result: ["reason"], close: ["note"],
  evaluate: ["rating", "comment"], reopen: ["reason"], request_extension: ["extension_hours", "reason"],
  request_defer: ["reason"], request_backlog: ["reason"], request_void: ["reason"],
  approve: ["note"], refuse: ["reason"], resume: ["note"],
};

export const LIGHT_COLOURS = { red: "#d93026", yellow: "#f0a020", green: "#2e9d4f" };
export const PURPOSES = {
  verify_identity: ["核实身份", "Verify identity"], visit_contact: ["走访联系", "Visit contact"],
  case_handling: ["事件处置", "Case handling"], emergency: ["紧急情况", "Emergency"], other: ["其他", "Other"],
};
