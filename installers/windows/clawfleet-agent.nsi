; ClawFleet agent installer for Windows (NSIS 3, Modern UI 2).
;
; Packs the PyInstaller one-folder build of the agent (installers/pyinstaller/clawfleet-agent.spec,
; made on a Windows runner: .github/workflows/agent-windows.yml) into one setup .exe:
;   makensis -DVERSION=0.1.0 -DPAYLOAD_DIR=dist\clawfleet-agent -DOUT_FILE=dist\clawfleet-agent-setup.exe \
;            installers\windows\clawfleet-agent.nsi
; Installs per machine into "Program Files\ClawFleet Agent", adds a Start menu entry that starts the
; tray (it asks for the enrollment token on first start), optionally starts the tray at logon
; (HKCU Run key, as 'clawfleet-agent autostart on'), and registers an uninstaller.
; Upgrades and the uninstaller first stop the agent service (net stop waits for it) and running trays;
; an upgrade starts the service again when this machine is enrolled for it (%ProgramData%\ClawFleet\agent.json).
; Silent: setup.exe /S (install.ps1 and self-updates run it so).
Unicode true
!include "MUI2.nsh"

!ifndef VERSION
  !define VERSION "0.0.0"
!endif
!ifndef PAYLOAD_DIR
  !error "pass -DPAYLOAD_DIR=<PyInstaller output folder containing clawfleet-agent.exe>"
!endif
!ifndef OUT_FILE
  !define OUT_FILE "clawfleet-agent-${VERSION}-setup.exe"
!endif

!define APP "ClawFleet Agent"
!define EXE "clawfleet-agent.exe"
!define TRAY_EXE "clawfleet-agent-tray.exe"  ; the same program without a console window
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\ClawFleetAgent"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define SERVICE "ClawFleetAgent"

Name "${APP} ${VERSION}"
OutFile "${OUT_FILE}"
InstallDir "$PROGRAMFILES64\${APP}"
InstallDirRegKey HKLM "${UNINST_KEY}" "InstallLocation"
RequestExecutionLevel admin
SetCompressor /SOLID lzma
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${APP} installer"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "LegalCopyright" "Apache-2.0"

!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\${TRAY_EXE}"
!define MUI_FINISHPAGE_RUN_PARAMETERS "run"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP} now (it asks for the enrollment token)"
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

!macro StopAgent
  nsExec::Exec 'net stop ${SERVICE}'                   ; waits until the service has stopped
  nsExec::Exec 'taskkill /IM ${TRAY_EXE}'              ; trays: ask first
  Sleep 1500
  nsExec::Exec 'taskkill /F /IM ${TRAY_EXE}'
  nsExec::Exec 'schtasks /End /TN "${APP}"'            ; the per-user headless task, if any
  nsExec::Exec 'taskkill /F /IM ${EXE}'
!macroend

Section "${APP}" SecMain
  SectionIn RO
  SetShellVarContext all
  !insertmacro StopAgent
  SetOutPath "$INSTDIR"
  File /r "${PAYLOAD_DIR}\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  CreateDirectory "$SMPROGRAMS\${APP}"
  CreateShortcut "$SMPROGRAMS\${APP}\${APP}.lnk" "$INSTDIR\${TRAY_EXE}" "run"
  CreateShortcut "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk" "$INSTDIR\uninstall.exe"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINST_KEY}" "Publisher" "ClawFleet"
  WriteRegStr HKLM "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoRepair" 1
  IfFileExists "$APPDATA\ClawFleet\agent.json" 0 +2           ; enrolled for the service: start it again
    nsExec::ExecToLog '"$INSTDIR\${EXE}" install-service --system'
SectionEnd

Section "Start the tray icon at logon" SecAutostart
  WriteRegStr HKCU "${RUN_KEY}" "${APP}" '"$INSTDIR\${TRAY_EXE}" run --autostart'
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecMain} "The agent and its tray icon."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecAutostart} "Show the tray icon every time you log on (it does nothing until this machine is enrolled)."
!insertmacro MUI_FUNCTION_DESCRIPTION_END

Section "Uninstall"
  SetShellVarContext all
  !insertmacro StopAgent
  ExecWait '"$INSTDIR\${EXE}" uninstall-service --system' $0
  ExecWait '"$INSTDIR\${EXE}" uninstall-service' $0
  DeleteRegValue HKCU "${RUN_KEY}" "${APP}"
  Delete "$SMPROGRAMS\${APP}\${APP}.lnk"
  Delete "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk"
  RMDir "$SMPROGRAMS\${APP}"
  RMDir /r "$INSTDIR"
  DeleteRegKey HKLM "${UNINST_KEY}"
SectionEnd
